"""Credentials in a tracking URI, and the values of variables named like credentials, are never
recorded: not in params, tags, the run name, config.yaml or environment.json."""

import json
import shlex
import string
import sys
from urllib.parse import quote

import pytest
import yaml
from conftest import free_port, run_command
from mlflow.tracking import MlflowClient

from gdfit.redaction import is_credential_name, public_uri, redact, redact_data
from gdfit.train import train

PASSWORD = "hunter2-x7q"
VIEW = "workflowType=machine_learning&viewStateShareKey=gdfit"
TOKEN = "tok-5up3r-s3cret"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("http://bob:pw@mlflow.example:5000", "http://***@mlflow.example:5000"),
        ("https://TOKEN123@host/path", "https://***@host/path"),
        ("postgresql://u:p@ss@db:5432/mlflow", "postgresql://***@db:5432/mlflow"),
        # Hydra escapes colons in the overrides it prints.
        (r"uri=http\://bob\:pw@host\:5000 x=1", r"uri=http\://***@host\:5000 x=1"),
        ("http://host:5000/x?token=abc&page=2", "http://host:5000/x?token=***&page=2"),
        ("s3://b/k?X-Amz-Signature=ff&X-Amz-Date=1", "s3://b/k?X-Amz-Signature=***&X-Amz-Date=1"),
        ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
        ("sqlite:////tmp/mlruns/mlflow.db", "sqlite:////tmp/mlruns/mlflow.db"),
        ("write to bob@example.org", "write to bob@example.org"),
        ("http://h:5000/x?pwd=abc&page=2", "http://h:5000/x?pwd=***&page=2"),
        ("http://alice:it's-Secr3t@127.0.0.1:5077", "http://***@127.0.0.1:5077"),
        # the address gdfit stores in a sweep parent's description: a key's name, no secret
        (
            f"View: http://127.0.0.1:5000/#/experiments/1/runs?{VIEW}",
            f"View: http://127.0.0.1:5000/#/experiments/1/runs?{VIEW}",
        ),
        (
            "http://h/?key=AIza9&sortKey=name&x-api-key=q1&page=2",
            "http://h/?key=***&sortKey=name&x-api-key=***&page=2",
        ),
        (
            "postgresql://db/m?sslpassword=zz&sslmode=require",
            "postgresql://db/m?sslpassword=***&sslmode=require",
        ),
        ("uri: 'http://h/?token=ab''c'", "uri: 'http://h/?token=***'"),  # YAML stays YAML
    ],
)
def test_uri_credentials_are_masked(text, shown):
    assert redact(text) == shown


@pytest.mark.parametrize(
    ("name", "credential"),
    [
        *[(n, True) for n in ("token", "access_token", "sslpassword", "pwd", "pass", "secret")],
        *[(n, True) for n in ("X-Amz-Signature", "X-Amz-Credential", "sig", "auth", "jwt")],
        *[(n, True) for n in ("key", "api_key", "apiKey", "subscription-key", "AccessKey")],
        *[(n, False) for n in ("viewStateShareKey", "sortKey", "primaryKey", "keyName")],
        *[(n, False) for n in ("workflowType", "page", "author", "design", "passfile", "sslmode")],
    ],
)
def test_a_key_name_is_told_from_a_credential(name, credential):
    assert is_credential_name(name) is credential


# Passwords over every class of character a user may type: each character at the start, in the
# middle and at the end of a password whose letters (Zq, 7Kx) must never be seen again.
CLASSES = {
    "letters and digits": string.ascii_letters[::5] + string.digits[::3],
    "unreserved": "-._~",
    "sub-delims": "!$&'()*+,;=",  # legal unescaped in a URI's userinfo (RFC 3986)
    "gen-delims": ":/?#[]@",  # not legal unescaped: a parser cuts the userinfo short at /?#
    "percent": "%",
    "other ASCII": '"<>\\^`{|} \t',
    "not ASCII": "éß中🔑",
}
PASSWORDS = [f"{c}Zq{c}7Kx{c}" for chars in CLASSES.values() for c in chars]
PASSWORDS += [f"Zq{chars}7Kx" for chars in CLASSES.values()]  # each class whole
PASSWORDS += ["Zq" + "".join(CLASSES.values()) + "7Kx", "Zq%2F%40%237Kx", "Zq::7Kx@@"]


def renderings(uri: str) -> list[str]:
    """`uri` as the texts gdfit records or prints carry it: as given, in an error line (twice,
    as MLflow's "Invalid url" says it), in the command line a shell shows, as Hydra prints an
    override (`\\()[]{}:=,`, space and tab escaped), in config.yaml, in environment.json."""
    hydra = "".join("\\" + c if c in "\\()[]{}:=, \t" else c for c in uri)  # Hydra's escapes
    return [
        uri,
        f"cannot use the MLflow store at {uri}: Invalid url: {uri}/api/2.0/mlflow/runs/create",
        shlex.join(["gdfit-train", f"tracking.uri={uri}", "train.steps=3"]),
        f"#0 : tracking.uri={hydra} backend=numpy",
        # config.yaml is dumped from filtered settings: YAML folds a long value at its spaces
        yaml.safe_dump(redact_data({"tracking": {"uri": uri, "experiment": "gdfit"}})),
        json.dumps({"overrides": [f"tracking.uri={uri}", "x=1"]}, indent=2),
        json.dumps({"command": ["gdfit-train", f"tracking.uri={uri}"]}, ensure_ascii=False),
    ]


@pytest.mark.parametrize("password", PASSWORDS, ids=ascii)
@pytest.mark.parametrize("user", ["alice", "al'ce", None])
def test_every_password_in_a_uri_is_masked_however_it_is_written(user, password):
    userinfo = password if user is None else f"{user}:{password}"
    uri = f"http://{userinfo}@127.0.0.1:5077/mlflow"
    for text in renderings(uri):
        shown = redact(text)
        assert "Zq" not in shown and "7Kx" not in shown, (text, shown)
        assert "127.0.0.1" in shown  # the host is still there to read
    assert public_uri(uri) == "http://127.0.0.1:5077/mlflow"


@pytest.mark.parametrize("password", PASSWORDS, ids=ascii)
def test_every_password_in_a_query_is_masked(password):
    encoded = quote(password, safe="")
    for name in ("password", "pwd", "token", "X-Amz-Signature", "api_key"):
        for value in {encoded, password if not set(password) & set("&# \t") else encoded}:
            uri = f"http://127.0.0.1:5077/?page=2&{name}={value}&viewStateShareKey=gdfit"
            for text in renderings(uri):
                shown = redact(text)
                assert "Zq" not in shown and "7Kx" not in shown, (text, shown)
                unescaped = shown.replace("\\", "")
                assert "viewStateShareKey=gdfit" in unescaped and "page=2" in unescaped


def test_values_of_credential_variables_are_masked_and_plain_words_are_not(monkeypatch):
    monkeypatch.setenv("DEPLOY_TOKEN", TOKEN)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG")
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")  # a name like a secret, a plain value
    monkeypatch.setenv("MY_KEY_COUNT", "1000")
    text = f"run {TOKEN} with wJalrXUtnFEMI/K7MDENG; nesterov: false, steps 1000"
    assert redact(text) == "run *** with ***; nesterov: false, steps 1000"


def test_a_run_records_no_credential(make_cfg, client, monkeypatch):
    """The command line (environment.json, tags gdfit.command and gdfit.overrides) carries a
    URI with a password and a query token; the run name carries a secret variable's value."""
    monkeypatch.setenv("DEPLOY_TOKEN", TOKEN)
    uri = f"http://bob:{PASSWORD}@mlflow.example:5000/?token={TOKEN}"
    # and a long name with a password of spaces and quotes, which YAML folds at its spaces
    name = f'run-{TOKEN} see http://bob:it\'s a {PASSWORD} with "spaces" and more@db.example/x'
    command = ["gdfit-train", f"tracking.uri={uri}", f"tracking.run_name={name}"]
    monkeypatch.setattr(sys, "argv", command)
    cfg = make_cfg("train.steps=3")
    cfg.tracking.run_name = name
    result = train(cfg, command[1:])

    run = client.get_run(result.run_id)
    folder = client.download_artifacts(result.run_id, "")
    environment = json.loads(open(f"{folder}/environment.json").read())
    config = yaml.safe_load(open(f"{folder}/config.yaml"))
    recorded = json.dumps([run.info.run_name, run.data.params, run.data.tags, environment, config])
    assert PASSWORD not in recorded and TOKEN not in recorded
    masked = "tracking.uri=http://***@mlflow.example:5000/?token=***"
    assert masked in run.data.tags["gdfit.command"]
    assert masked in run.data.tags["gdfit.overrides"]
    assert environment["overrides"][0] == masked
    shown = "run-*** see http://***@db.example/x"
    assert run.info.run_name == config["tracking"]["run_name"] == shown


def test_an_experiment_named_with_a_secret_is_stored_and_found_filtered(tmp_path):
    """The experiment's name and its artifact folder pass the filter as the run name does; the
    name the user typed still finds it."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {"MY_API_KEY": "zebra-giraffe-42"}
    named = ["tracking.experiment=exp-zebra-giraffe-42", f"tracking.uri={uri}"]
    out = run_command("gdfit-train", "train.steps=20", *named, cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    client = MlflowClient(uri)
    assert sorted(e.name for e in client.search_experiments()) == ["Default", "exp-***"]
    experiment = client.get_experiment_by_name("exp-***")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED"
    assert experiment.artifact_location.startswith((tmp_path / "artifacts").as_uri())
    assert not [p for p in tmp_path.rglob("*") if "zebra" in str(p)]
    listed = run_command(
        "gdfit-compare",
        "--experiment",
        "exp-zebra-giraffe-42",
        "--tracking-uri",
        uri,
        cwd=tmp_path,
        env=env,
    )
    assert listed.returncode == 0, listed.stderr
    assert run.info.run_id[:8] in listed.stdout
    assert "zebra" not in out.stdout + out.stderr + listed.stdout + listed.stderr


@pytest.mark.parametrize(
    ("password", "says"),
    [
        ("it's-Zq7Kx", "cannot use the MLflow store at http://***@127.0.0.1:"),
        ("pa/Zq#7Kx y", "tracking.uri: its user name or password holds a character that must"),
        ('Zq"7Kx\\%', "cannot use the MLflow store at http://***@127.0.0.1:"),
    ],
    ids=ascii,
)
def test_a_password_in_the_servers_address_is_never_printed(password, says, tmp_path):
    """The store's address from the environment, with nothing listening there: one line, the
    password masked however a parser would cut the address."""
    address = f"http://alice:{password}@127.0.0.1:{free_port()}"
    env = {"MLFLOW_TRACKING_URI": address}
    out = run_command("gdfit-train", "tracking=server", "train.steps=3", cwd=tmp_path, env=env)
    assert out.returncode in (1, 2) and "Traceback" not in out.stderr
    assert out.stderr.count("\n") == 1 and out.stderr.startswith(f"gdfit: error: {says}")
    assert "Zq" not in out.stdout + out.stderr and "7Kx" not in out.stdout + out.stderr
