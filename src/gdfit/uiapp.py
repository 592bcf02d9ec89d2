"""The app `gdfit-ui` serves: MLflow's own server app, plus one page that keeps the MLflow
Assistant's panel from opening itself over gdfit's view.

MLflow 3.17's UI opens its assistant panel, a quarter of the window, on a browser's first
visit to a server it reaches as localhost, 127.0.0.1 or ::1 (AssistantFloatingButton.tsx: it
checks only `window.location.hostname` and the local-storage flag below; no server setting,
environment variable or URL parameter changes this). Local storage belongs to the page's
origin, so only a page of the same server can set the flag: LANDING does that and goes on to
the UI route in its own address's fragment. The assistant stays one click away (the button at
the bottom right). MLflow loads this app through its `mlflow.app` entry point
(`mlflow server --app-name gdfit-ui`); every other request goes to MLflow's app untouched.
"""

from __future__ import annotations

APP_NAME = "gdfit-ui"  # its name among the `mlflow.app` entry points (pyproject.toml)
LANDING = "/gdfit"
# The UI's useLocalStorage keeps `key` as `<key>_v<version>`, its value as JSON.
AUTO_OPENED = "mlflow.assistant.fab.autoOpenedOnFirstLoad_v1"
# Same origin only: the UI's own root, with the route the landing address carries after '#'.
PAGE = f"""<!doctype html>
<meta charset="utf-8">
<title>MLflow</title>
<script>
try {{ localStorage.setItem("{AUTO_OPENED}", "true"); }} catch (e) {{}}
location.replace("/" + location.hash);
</script>
""".encode()
HEADERS = [
    (b"content-type", b"text/html; charset=utf-8"),
    (b"content-length", str(len(PAGE)).encode()),
    (b"cache-control", b"no-store"),
    (b"x-content-type-options", b"nosniff"),
]


def landing(address: str) -> str:
    """The address that opens UI address `address` (`<base>/#<route>`) through LANDING."""
    base, sep, route = address.partition("/#")
    assert sep, address
    return f"{base}{LANDING}#{route}"


class App:
    """An ASGI app: LANDING here, everything else (lifespan included) to MLflow's app."""

    def __init__(self, mlflow_app) -> None:
        self.mlflow_app = mlflow_app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["path"] == LANDING:
            await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
            body = b"" if scope["method"] == "HEAD" else PAGE
            await send({"type": "http.response.body", "body": body})
            return
        await self.mlflow_app(scope, receive, send)


def create_app() -> App:
    """uvicorn's factory (MLflow starts a function entry point with --factory): importing
    MLflow's app waits until the server process, not the `mlflow server` command, needs it."""
    from mlflow.server.fastapi_app import app

    return App(app)
