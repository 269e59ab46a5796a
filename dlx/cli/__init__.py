"""The `dlx` command: thin Typer commands over `dlx.api`.

Commands parse options, call the API, render results, and map errors to exit statuses in one
place (`_run`). Nothing heavy is imported at module level: `dlx --help` must stay instant, so
TensorFlow, Keras and MLflow are imported inside the API calls that need them.
"""

from __future__ import annotations

import contextlib
import gc
import json
import math
import sys
from collections.abc import Callable, Iterator
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


TrackingUriOption = Annotated[
    str | None,
    typer.Option(
        "--tracking-uri",
        help="The MLflow store; default: $MLFLOW_TRACKING_URI, else ./mlflow.db.",
        show_default=False,
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
    """Call the API; report a DlxError (or an interrupt) and exit with its status.

    SIGTERM (`timeout`, `docker stop`, Kubernetes) stops the call as Ctrl-C does: a run in
    progress is recorded KILLED, and the exit status is 143.
    """
    from dlx.errors import DlxError, Interrupted

    try:
        with _sigterm_raised():
            return call()
    except DlxError as exc:
        if _state["debug"]:
            raise
        _stderr(exc.render())
        status = int(exc.exit_status)
    except KeyboardInterrupt as exc:
        stopped = exc if isinstance(exc, Interrupted) else Interrupted()
        _stderr(str(stopped))
        status = int(stopped.exit_status)
    # What the failure left (e.g. TensorFlow's thread pool of a collective that failed) is
    # collected now, while it can still close: at exit it would print "Exception ignored".
    gc.collect()
    raise typer.Exit(status)


@contextlib.contextmanager
def _sigterm_raised() -> Iterator[None]:
    """While the block runs, SIGTERM raises `Terminated` (a `KeyboardInterrupt`) in it.

    Python runs the handler in the main thread between two bytecodes, so the exception comes
    out of `fit` between two steps, whatever TensorFlow was doing. Later SIGTERMs are ignored:
    they would cut short the recording of the run's end that the first one started.
    """
    import signal
    import threading

    from dlx.errors import Terminated

    if threading.current_thread() is not threading.main_thread():  # only it may set handlers
        yield
        return

    def terminate(signum: int, frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Terminated

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _stderr(text: str) -> None:
    from rich.console import Console

    Console(stderr=True, highlight=False, soft_wrap=True).print(text, markup=False)


@app.command()
def train(
    spec: Annotated[
        Path | None,
        typer.Argument(help="The spec's YAML file (none with --resume).", show_default=False),
    ] = None,
    set_: SetOption = None,
    expect: Annotated[
        list[str] | None,
        typer.Option(
            "--expect",
            metavar="METRIC>=VALUE",
            help="A gate on a final metric (>=, <=, >, <); exit 3 when not met. Repeatable.",
        ),
    ] = None,
    resume: Annotated[
        str | None,
        typer.Option(
            "--resume",
            metavar="RUN",
            help="Continue a run that did not finish (failed, interrupted or killed) from its "
            "last checkpoint, into the same MLflow run.",
            show_default=False,
        ),
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            min=1,
            metavar="N",
            help="Train as a multi-worker job of N processes on this machine (127.0.0.1).",
        ),
    ] = 1,
    worker_timeout: Annotated[
        float,
        typer.Option(
            "--worker-timeout",
            min=1,
            metavar="SECONDS",
            help="With --workers: how long workers wait for each other to join.",
        ),
    ] = 300,
    tracking_uri: Annotated[
        str | None,
        typer.Option(
            "--tracking-uri",
            metavar="URI",
            help="The MLflow store when the spec names none (with --resume: the run's); "
            "default: $MLFLOW_TRACKING_URI, else ./mlflow.db.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Train a spec and record the run in MLflow."""
    from dlx import api
    from dlx.errors import ExitStatus, UsageError

    def check() -> None:
        if (spec is None) == (resume is None):
            raise UsageError(
                "give a SPEC to train, or --resume RUN to continue a run (not both)"
                if spec is not None
                else "missing SPEC (or --resume RUN)"
            )
        if resume is not None and set_:
            raise UsageError("--resume continues a run with its logged spec: --set cannot apply")

    _run(check)
    if workers > 1:
        from dlx.train.launcher import launch

        if spec is not None:  # a spec error once, here, rather than from every worker
            _run(lambda: api.check_cluster(spec, set_ or [], workers))

        arguments = ["--debug"] if _state["debug"] else []
        arguments += ["train", *([str(spec)] if spec is not None else ["--resume", resume])]
        arguments += [f"--set={value}" for value in set_ or []]
        arguments += [f"--expect={value}" for value in expect or []]
        arguments += [f"--tracking-uri={tracking_uri}"] if tracking_uri else []
        raise typer.Exit(launch(arguments, workers, timeout=worker_timeout))
    if resume is not None:
        result = _run(lambda: api.resume(resume, tracking_uri=tracking_uri, expect=expect or []))
    else:
        result = _run(lambda: api.train(spec, set_ or [], expect or [], tracking_uri=tracking_uri))
    replicas = f"{result.replicas} replica{'s' if result.replicas > 1 else ''}"
    workers_text = f", {result.workers} workers" if result.workers > 1 else ""
    if not result.run_id:
        typer.echo(
            f"worker {result.worker} of {result.workers} done in {result.seconds:.1f}s "
            f"({result.strategy}, {replicas}); the chief records the run"
        )
        return
    typer.echo(
        f"run {result.run_id} finished in {result.seconds:.1f}s "
        f"({result.strategy}, {replicas}{workers_text})"
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
    """Check specs completely (schema, names, arguments, the model, the data sources) without
    reading data."""
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
        typer.echo(_json(summary))
        return
    _print_summary(summary)


def _json(value: Any) -> str:
    """Strict JSON, as `JSON.parse` and other strict readers take it: a number that is NaN or
    infinite (a run that diverged) is written as null, since JSON has no such numbers."""
    return json.dumps(_finite(value), indent=2, allow_nan=False)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


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


class RunsFormat(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"


class CompareFormat(str, Enum):
    table = "table"
    markdown = "markdown"
    csv = "csv"
    json = "json"


ExperimentOption = Annotated[
    str | None,
    typer.Option(
        "--experiment", "-e", help="Experiment name; default: the one with the newest run."
    ),
]


@app.command()
def runs(
    experiment: ExperimentOption = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="How many runs.")] = 20,
    format: Annotated[RunsFormat, typer.Option("--format", "-f")] = RunsFormat.table,
    tracking_uri: TrackingUriOption = None,
) -> None:
    """List runs, newest first: id, name, status, start, duration, key metrics."""
    from dlx.track.read import open_store

    def listing() -> tuple[str, list[dict[str, Any]]]:
        store = open_store(tracking_uri)
        found = store.experiment(experiment)
        return found.name, [_run_summary(run) for run in store.runs(found, limit=limit)]

    name, records = _run(listing)
    if format is RunsFormat.json:
        typer.echo(_json(records))
        return
    keys = sorted({k for r in records for k in r["metrics"]}, key=_metric_order)
    header = ["run", "name", "status", "start", "duration", *keys]
    rows = [
        [
            r["run_id"][:8],
            r["run_name"] or "",
            r["status"],
            r["start_time"],
            _duration(r["duration_s"]),
            *(_cell(r["metrics"].get(k)) for k in keys),
        ]
        for r in records
    ]
    if format is RunsFormat.csv:
        _print_csv(header, rows)
    else:
        _print_table(f"{name}: {len(records)} runs", header, rows)


def _run_summary(run: Any) -> dict[str, Any]:
    from datetime import datetime

    info = run.info
    keys = [m for m in run.data.metrics if m.startswith(("val_", "test_"))]
    metrics = {k: run.data.metrics[k] for k in (keys or list(run.data.metrics)[:6])}
    end = info.end_time
    return {
        "run_id": info.run_id,
        "run_name": info.run_name,
        "status": info.status,
        "start_time": datetime.fromtimestamp(info.start_time / 1000).isoformat(" ", "seconds"),
        "duration_s": (end - info.start_time) / 1000 if end else None,
        "metrics": metrics,
    }


def _metric_order(name: str) -> tuple[int, str]:
    return (0 if name.startswith("val_") else 1, name)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    minutes, seconds = divmod(round(seconds), 60)
    return f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


def _cell(value: float | None) -> str:
    return "" if value is None else f"{value:.4g}"


@app.command()
def compare(
    references: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="[RUN|SPEC]...",
            help="Run ids (or unique prefixes); or a spec, for its experiment. Default: the "
            "runs of the experiment.",
            show_default=False,
        ),
    ] = None,
    experiment: ExperimentOption = None,
    filter: Annotated[
        str, typer.Option("--filter", help="An MLflow filter, e.g. \"params.train.epochs = '5'\".")
    ] = "",
    sort: Annotated[
        str | None, typer.Option("--sort", help="Sort by this final metric, best first.")
    ] = None,
    metric: Annotated[
        list[str] | None, typer.Option("--metric", "-m", help="Show only these metrics.")
    ] = None,
    all_params: Annotated[
        bool, typer.Option("--all-params", help="Show every param, not only those that differ.")
    ] = False,
    format: Annotated[CompareFormat, typer.Option("--format", "-f")] = CompareFormat.table,
    plot: Annotated[
        Path | None, typer.Option("--plot", help="Write the overlaid learning curves to a PNG.")
    ] = None,
    tracking_uri: TrackingUriOption = None,
) -> None:
    """Put runs side by side: the params that differ, final metrics, the best highlighted."""
    from dlx.track import compare as comparing
    from dlx.track.read import open_store

    def gather() -> Any:
        uri, name, ids = tracking_uri, experiment, []
        for reference in references or []:
            if reference.endswith((".yaml", ".yml")):
                uri, name = _spec_store(reference, uri, name)
            else:
                ids.append(reference)
        store = open_store(uri, filter=filter)
        found = store.find(ids) if ids else store.runs(store.experiment(name), filter=filter)
        if not found:
            from dlx.errors import DlxError

            raise DlxError("no runs to compare")
        result = comparing.compare(store, found, metrics=metric, all_params=all_params, sort=sort)
        extras = None
        if len(found) == 2 and format in (CompareFormat.table, CompareFormat.markdown):
            first, second = result.runs
            extras = (
                comparing.metric_deltas(first, second),
                comparing.spec_diff(store, first, second),
            )
        if plot is not None:
            comparing.curves_figure(store, result).savefig(plot, dpi=110)
        return result, extras

    result, extras = _run(gather)
    header, rows = result.rows()
    if format is CompareFormat.json:
        typer.echo(_json(result.records()))
    elif format is CompareFormat.csv:
        _print_csv(header, rows)
    elif format is CompareFormat.markdown:
        typer.echo(_markdown(header, rows, _best_cells(result)))
        if extras:
            deltas, diff = extras
            typer.echo("\n" + _markdown(*_delta_rows(deltas, *result.runs), set()))
            if diff:
                typer.echo(f"\n```diff\n{diff}```")
    else:
        _print_table(None, header, rows, _best_cells(result))
        if extras:
            deltas, diff = extras
            _print_table("metric deltas", *_delta_rows(deltas, *result.runs))
            if diff:
                typer.echo(diff)
    if plot is not None and format is not CompareFormat.json:
        typer.echo(f"learning curves: {plot}", err=True)


def _spec_store(spec: str, uri: str | None, name: str | None) -> tuple[str | None, str]:
    from dlx.spec import load_spec

    loaded = load_spec(spec)
    tracking = loaded.spec.tracking
    return uri or tracking.uri, name or tracking.experiment or loaded.name


def _best_cells(result: Any) -> set[tuple[int, int]]:
    """(row, column) of each metric's best value."""
    offset = 3 + len(result.params)
    return {
        (row, offset + column)
        for row, run in enumerate(result.runs)
        for column, metric in enumerate(result.metrics)
        if run.info.run_id in result.best.get(metric, ()) and len(result.runs) > 1
    }


def _delta_rows(
    deltas: list[tuple[str, float | None, float | None]], first: Any, second: Any
) -> tuple[list, list]:
    rows = []
    for name, before, after in deltas:
        delta = "" if before is None or after is None else f"{after - before:+.4g}"
        rows.append([name, _cell(before), _cell(after), delta])
    return ["metric", first.info.run_id[:8], second.info.run_id[:8], "delta"], rows


def _print_table(
    title: str | None,
    header: list[str],
    rows: list[list[str]],
    highlight: set[tuple[int, int]] | None = None,
    style: str = "bold green",
) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title, title_justify="left")
    for i, name in enumerate(header):
        table.add_column(name, justify="right" if i >= 3 else "left")
    for r, row in enumerate(rows):
        cells = [
            Text(cell, style=style) if highlight and (r, c) in highlight else Text(cell)
            for c, cell in enumerate(row)
        ]
        table.add_row(*cells)
    # Off a terminal (CI logs, pipes) there is no width to fit: print the table whole.
    Console(highlight=False, width=None if sys.stdout.isatty() else 100_000).print(table)


def _markdown(header: list[str], rows: list[list[str]], bold: set[tuple[int, int]]) -> str:
    def cell(text: str, r: int, c: int) -> str:
        text = text.replace("|", "\\|")
        return f"**{text}**" if (r, c) in bold and text else text

    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for r, row in enumerate(rows):
        lines.append("| " + " | ".join(cell(t, r, c) for c, t in enumerate(row)) + " |")
    return "\n".join(lines)


def _print_csv(header: list[str], rows: list[list[str]]) -> None:
    import csv

    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)


@app.command()
def reproduce(
    run: Annotated[str, typer.Argument(help="The run's id, or a unique prefix of it.")],
    tolerance: Annotated[
        float,
        typer.Option("--tolerance", min=0.0, help="Largest absolute difference counted equal."),
    ] = 0.0,
    tracking_uri: TrackingUriOption = None,
) -> None:
    """Train a recorded run's logged spec again; exit 0 when every final metric matches."""
    from dlx import api
    from dlx.errors import ExitStatus

    done = _run(lambda: api.reproduce(run, tolerance=tolerance, tracking_uri=tracking_uri))
    rows = [
        [
            name,
            _cell(before),
            _cell(after),
            "" if None in (before, after) else f"{after - before:+.3g}",
        ]
        for name, before, after in done.rows
    ]
    mismatches = set(done.mismatches)
    highlight = {(i, 3) for i, row in enumerate(rows) if row[0] in mismatches}
    header = ["metric", done.original_run_id[:8], done.result.run_id[:8], "delta"]
    _print_table("original vs reproduction", header, rows, highlight, style="bold red")
    if mismatches:
        _stderr(
            f"not reproduced: {len(mismatches)} metric(s) differ by more than {tolerance:g}: "
            + ", ".join(sorted(mismatches))
        )
        before, after = done.placement
        if before != after:
            _stderr(
                f"note: the original ran on {before}, the reproduction on {after}; another "
                "placement draws its random numbers (dropout) per replica and sums in another "
                "order (run it as the original ran, e.g. with the same TF_CONFIG, to compare "
                "like with like)"
            )
        raise typer.Exit(int(ExitStatus.EXPECTATION_NOT_MET))
    typer.echo(f"reproduced: every final metric within {tolerance:g} (run {done.result.run_id})")


@app.command()
def score(
    run: Annotated[str, typer.Argument(help="An autoencoder run's id, or a unique prefix.")],
    spec: Annotated[
        Path | None,
        typer.Argument(
            help="A spec whose data: section is scored (its test split, else all of it). "
            "Default: the run's own spec.",
            show_default=False,
        ),
    ] = None,
    set_: SetOption = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write one row per example to this CSV: index,error."),
    ] = None,
    embed: Annotated[
        Path | None,
        typer.Option("--embed", help="Write the encoder's embeddings of the data to this .npy."),
    ] = None,
    tracking_uri: TrackingUriOption = None,
) -> None:
    """Score data by an autoencoder run's reconstruction error (anomaly detection)."""
    from dlx import api

    scores = _run(
        lambda: api.score(
            run, spec, set_ or [], output=output, embed=embed, tracking_uri=tracking_uri
        )
    )
    summary = scores.summary()
    typer.echo(f"run {scores.run_id}: {summary['count']} examples scored ({scores.split} data)")
    labels = {"mean": "mean error", "p95": "p95 error", "threshold": "run's p95 error"}
    for name, label in labels.items():
        if summary[name] is not None:
            typer.echo(f"  {label:<16} {summary[name]:.6g}")
    if scores.over_threshold is not None:
        typer.echo(f"  {'over threshold':<16} {scores.over_threshold}")
    for label, path in (("errors", scores.output), ("embeddings", scores.embeddings)):
        if path is not None:
            typer.echo(f"{label}: {path}")


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
