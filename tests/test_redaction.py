"""Credentials in a tracking URI, and the values of variables named like credentials, are never
recorded: not in params, tags, the run name, config.yaml or environment.json."""

import json
import sys

import pytest
import yaml

from gdfit.redaction import redact
from gdfit.train import train

PASSWORD = "hunter2-x7q"
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
    ],
)
def test_uri_credentials_are_masked(text, shown):
    assert redact(text) == shown


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
    command = ["gdfit-train", f"tracking.uri={uri}", f"tracking.run_name=run-{TOKEN}"]
    monkeypatch.setattr(sys, "argv", command)
    result = train(make_cfg("train.steps=3", f"tracking.run_name=run-{TOKEN}"), command[1:])

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
    assert run.info.run_name == config["tracking"]["run_name"] == "run-***"
