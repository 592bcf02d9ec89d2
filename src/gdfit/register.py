"""Register a run's fit in MLflow's Model Registry; name the best one `champion`.

  gdfit-register 3f2a9c1e                    its model, as gdfit-<model.name>
  gdfit-register sweep-20261127-101500       a sweep: its best job's model
  gdfit-register 3f2a9c1e --name sine-cubic  another registered model
  gdfit-register 3f2a9c1e --force            make it champion even if not better

RUN_OR_SWEEP is a run id, a unique prefix of one or a run name (the newest run
of that name). Each call adds a version; the alias `champion` moves to it only
when its final_loss beats the champion's on the same data. A run without a
logged model gets one first, from its config and coefficients. Serve the
champion with
  mlflow models serve -m models:/gdfit-polynomial@champion --env-manager local
Exit codes: 0 registered (whether or not champion moved), 2 cannot register.
"""

import argparse

from gdfit import champion
from gdfit.errors import reported_errors
from gdfit.store import add_tracking_uri, existing_store


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="gdfit-register",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.splitlines()[2:]),
    )
    parser.add_argument(
        "run", metavar="RUN_OR_SWEEP", help="the run (or sweep) whose fit to register"
    )
    parser.add_argument(
        "--name", default=None, help="the registered model (default: gdfit-<model.name>)"
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="move the alias champion to the new version even when it is not better",
    )
    add_tracking_uri(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    with reported_errors():
        args = parse_args(argv)
        uri = existing_store(args.tracking_uri)
        done = champion.register(uri, args.run, args.name, args.force)
        print(f"gdfit-register: {done.said}")
        print(f"serve the {champion.ALIAS}: {champion.serve_command(uri, done.name)}")


if __name__ == "__main__":
    main()
