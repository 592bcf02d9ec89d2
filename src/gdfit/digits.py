"""How gdfit writes a setting's values for people: short, and with as many digits as keep the
values of a table or a legend apart (`1e-6`, `3.51e-6` for 3.5107325971414207e-06)."""


def _number(text: str, digits: int) -> str:
    """`1e-6` for "1e-06", `3.51e-6` for "3.5107325971414207e-06", `1e-4` for "0.0001",
    `0.5` for "0.5", `200` for "200"."""
    try:
        return str(int(text))
    except ValueError:
        pass
    value = float(text)
    if value == 0 or 1e-2 <= abs(value) < 1e5:
        return f"{value:.{digits}g}"
    mantissa, _, exponent = f"{value:.{digits - 1}e}".partition("e")
    if "." in mantissa:
        mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{int(exponent)}"


def short_value(text: str, digits: int = 3) -> str:
    """A param's value (as MLflow stores it, text) in short form; text that is not a number,
    or a list of numbers, as it is."""
    if text.startswith("["):  # a list param, logged as JSON: betas=[0.9,0.999]
        inner = text.strip("[]").split(",")
        return "[" + ",".join(short_value(t.strip(), digits) for t in inner if t.strip()) + "]"
    if text in ("True", "False"):
        return text
    try:
        return _number(text, digits)
    except ValueError:
        return text


def value_texts(values: list[str]) -> dict[str, str]:
    """Each distinct value in short form, with as few digits (3 at least) as keep them apart."""
    distinct = sorted(set(values))
    for digits in range(3, 18):
        texts = {v: short_value(v, digits) for v in distinct}
        if len(set(texts.values())) == len(distinct):
            return texts
    return {v: v for v in distinct}
