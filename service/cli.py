"""``forecast-service``: one command line for serving, the model pipeline and the benchmark."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from pathlib import Path

from service import __version__

#: The source tree this package was installed from, if it was (editable install, checkout).
SOURCE_ROOT = Path(__file__).resolve().parent.parent
#: Commands of ``python -m models``, and what each one does (shown in ``--help``).
MODEL_COMMANDS = {
    "train": "train one network, evaluate it, export it (python -m models train)",
    "export": "export a saved checkpoint into a model repository (python -m models export)",
    "validate": "check model directories against the contract (python -m models validate)",
    "compare": "train every kind on every data set and write the report (python -m models compare)",
}
DESCRIPTION = """\
Serve recurrent forecasters, train and check the models they run, and benchmark the service.

examples:
  forecast-service serve                  start the server (what python -m service does)
  FORECAST_MQTT_URL=mqtt://broker:1883 forecast-service mqtt
                                          the MQTT bridge alone, without the HTTP server
  forecast-service train taylor --kind gru --repository models/repository
  forecast-service validate models/repository
  forecast-service bench --quick          the benchmark, from a source checkout

train, export, validate and compare pass their arguments unchanged to the model pipeline's
own command line (python -m models), so the two always take the same options:
forecast-service train --help lists them.
"""
MQTT_HELP = "run the MQTT bridge alone, without the HTTP server (needs FORECAST_MQTT_URL)"
BENCH_HELP = "run the benchmark and write tests/bench/results.md (python -m tests.bench)"


def _settings_epilog() -> str:
    from service.settings import Settings

    lines = ["settings (environment variables; an unknown FORECAST_* one stops start-up):"]
    for name, field in Settings.model_fields.items():
        default = field.get_default(call_default_factory=True)
        lines.append(f"  FORECAST_{name.upper()}  [default: {default!s}]")
        lines.append(f"      {field.description or ''}")
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="forecast-service",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    top.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = top.add_subparsers(dest="command", metavar="COMMAND", required=True)
    commands.add_parser(
        "serve",
        help="start the HTTP server from FORECAST_* settings (what python -m service does)",
        description="Start the HTTP server. It takes no options: every setting is a "
        "FORECAST_* environment variable.",
        epilog=_settings_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    mqtt = commands.add_parser(
        "mqtt",
        help=MQTT_HELP,
        description="Bridge an MQTT broker to the forecasting engine: readings in from "
        "FORECAST_MQTT_READINGS_TOPIC, answers out to FORECAST_MQTT_FORECASTS_TOPIC, with the "
        "store, models and settings the server would use (FORECAST_* variables, see serve "
        "--help). The server runs the same bridge itself when FORECAST_MQTT_URL is set.",
    )
    mqtt.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        metavar="PORT",
        help="serve Prometheus metrics on http://FORECAST_HOST:PORT/metrics",
    )
    for name, text in MODEL_COMMANDS.items():
        # Their options belong to python -m models; --help is answered there.
        commands.add_parser(name, help=text, add_help=False)
    commands.add_parser("bench", help=BENCH_HELP, add_help=False)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    top = parser()
    if not args or args[0].startswith("-"):
        top.parse_args(args)  # --help / --version exit here; anything else is an error
        return 2
    command, rest = args[0], args[1:]
    if command == "serve":
        top.parse_args(args)  # serve --help, or a stray option refused
        from service.__main__ import main as serve

        serve()
        return 0
    if command == "mqtt":
        options = top.parse_args(args)
        from service.__main__ import settings_or_exit
        from service.logs import configure_logging
        from service.mqtt.standalone import run

        settings = settings_or_exit()
        configure_logging(settings.log_level, settings.log_format)
        return run(settings, metrics_port=options.metrics_port)
    if command in MODEL_COMMANDS:
        return _models(command, rest)
    if command == "bench":
        return _bench(rest)
    top.parse_args(args)  # an unknown command: argparse names the valid ones
    return 2


def _models(command: str, rest: list[str]) -> int:
    from models.__main__ import main as models_main

    try:
        return models_main([command, *rest])
    except ModuleNotFoundError as exc:
        # torch, pandas and the rest come with the train extra; serving needs none of them.
        print(
            f"forecast-service {command}: {exc.name} is not installed; the model pipeline "
            "needs the training extra: python -m pip install 'stateful-forecast[train]'",
            file=sys.stderr,
        )
        return 2


def _bench(rest: list[str]) -> int:
    if not (SOURCE_ROOT / "tests" / "bench" / "run.py").is_file():
        print(
            "forecast-service bench: the benchmark lives in the source tree (tests/bench/), "
            "which this installation does not have. Run it from a checkout: "
            "python -m pip install -e '.[dev]' && forecast-service bench",
            file=sys.stderr,
        )
        return 2
    if str(SOURCE_ROOT) not in sys.path:
        sys.path.insert(0, str(SOURCE_ROOT))
    # Imported by name: the benchmark is test code, outside the package and its type checks.
    run = importlib.import_module("tests.bench.run")
    run.main(rest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
