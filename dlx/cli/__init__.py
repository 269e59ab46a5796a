"""The `dlx` command: thin Typer commands over `dlx.api`.

Commands parse options, call the API, render results, and map errors to exit statuses in one
place (`_run`). Nothing heavy is imported at module level: `dlx --help` must stay instant, so
TensorFlow, Keras and MLflow are imported inside the API calls that need them.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from dlx import __version__

app = typer.Typer(
    name="dlx",
    help="Declarative deep-learning experiments: one YAML spec -> a Keras model, trained and "
    "tracked in MLflow.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

T = TypeVar("T")

_state = {"debug": False}

SpecPath = Annotated[Path, typer.Argument(help="The spec's YAML file.", show_default=False)]
SetOption = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        metavar="KEY=VALUE",
        help="Override a spec value by its dotted path, e.g. train.epochs=5 (read as YAML).",
    ),
]


class InspectFormat(str, Enum):
    table = "table"
    json = "json"


def _version(value: bool) -> None:
    if value:
        typer.echo(f"dlx {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = False,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show Python tracebacks of errors.")
    ] = False,
) -> None:
    _state["debug"] = debug


def _run(call: Callable[[], T]) -> T:
    """Call the API; report a DlxError (or an interrupt) and exit with its status."""
    from dlx.errors import DlxError, ExitStatus

    try:
        return call()
    except DlxError as exc:
        if _state["debug"]:
            raise
        _stderr(exc.render())
        raise typer.Exit(int(exc.exit_status)) from None
    except KeyboardInterrupt:
        _stderr("interrupted")
        raise typer.Exit(int(ExitStatus.INTERRUPTED)) from None


def _stderr(text: str) -> None:
    from rich.console import Console

    Console(stderr=True, highlight=False, soft_wrap=True).print(text, markup=False)


@app.command()
def train(
    spec: SpecPath,
    set_: SetOption = None,
    expect: Annotated[
        list[str] | None,
        typer.Option(
            "--expect",
            metavar="METRIC>=VALUE",
            help="A gate on a final metric (>=, <=, >, <); exit 3 when not met. Repeatable.",
        ),
    ] = None,
) -> None:
    """Train a spec and record the run in MLflow."""
    from dlx import api
    from dlx.errors import ExitStatus

    result = _run(lambda: api.train(spec, set_ or [], expect or []))
    typer.echo(
        f"run {result.run_id} finished in {result.seconds:.1f}s "
        f"({result.strategy}, {result.replicas} replica{'s' if result.replicas > 1 else ''})"
    )
    for name, value in sorted(result.metrics.items()):
        typer.echo(f"  {name:<28} {value:.6g}")
    typer.echo(result.ui_hint)
    if result.failures:
        for failure in result.failures:
            _stderr(f"expectation failed: {failure}")
        raise typer.Exit(int(ExitStatus.EXPECTATION_NOT_MET))


@app.command()
def validate(
    specs: Annotated[list[Path], typer.Argument(help="Spec files.", show_default=False)],
    set_: SetOption = None,
) -> None:
    """Check specs completely (schema, names, arguments, the model) without reading data."""
    from dlx import api
    from dlx.errors import DlxError, ExitStatus, relative_path

    worst = ExitStatus.OK
    for spec in specs:
        try:
            api.validate(spec, set_ or [])
        except DlxError as exc:
            if _state["debug"]:
                raise
            _stderr(exc.render())
            worst = max(worst, exc.exit_status)
            continue
        typer.echo(f"{relative_path(spec)}: ok")
    if worst:
        raise typer.Exit(int(worst))


@app.command()
def inspect(
    spec: SpecPath,
    set_: SetOption = None,
    format: Annotated[
        InspectFormat, typer.Option("--format", "-f", help="Output format.")
    ] = InspectFormat.table,
) -> None:
    """Show the model a spec builds: layers, output shapes and parameter counts."""
    from dlx import api

    summary = _run(lambda: api.inspect(spec, set_ or []))
    if format is InspectFormat.json:
        typer.echo(json.dumps(summary, indent=2))
        return
    _print_summary(summary)


def _print_summary(summary: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{summary['name']} ({summary['kind']})", title_justify="left")
    table.add_column("Layer")
    table.add_column("Class")
    table.add_column("Output shape")
    table.add_column("Params", justify="right")
    for layer in summary["layers"]:
        shape = json.dumps(layer["output_shape"]).replace("null", "None")
        table.add_row(layer["name"], layer["class_name"], shape, f"{layer['params']:,}")
    console = Console(highlight=False)
    console.print(table)
    console.print(
        f"Total params: {summary['params']:,}  "
        f"(trainable: {summary['trainable_params']:,}, "
        f"non-trainable: {summary['non_trainable_params']:,})"
    )


@app.command()
def schema() -> None:
    """Print the JSON Schema of the spec language, for editors."""
    from dlx import api

    typer.echo(json.dumps(api.schema(), indent=2))


def main() -> None:
    """Entry point of the `dlx` console script."""
    app(prog_name="dlx")


if __name__ == "__main__":
    sys.exit(main())
