"""The `dlx` command: thin Typer commands over `dlx.api`.

Commands parse options, call the API (through `_run`), and show its results (`dlx.cli.render`).
Every exception maps to an exit status in one place (`_exit_status`): a `DlxError` to its own,
anything else to one line and exit status 1. Nothing heavy is imported at module level:
`dlx --help` must stay instant, so TensorFlow, Keras and MLflow are imported inside the API
calls that need them.
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from dlx import __version__, proc
from dlx.cli import baseline, render
from dlx.cli.exiting import call_api, exit_status, state
from dlx.cli.options import SetOption, SpecPath, TrackingUriOption
from dlx.cli.progress import PlainLines, training_progress

app = typer.Typer(
    name="dlx",
    help="Declarative deep-learning experiments: one YAML spec -> a Keras model, trained and "
    "tracked in MLflow.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
app.add_typer(baseline.app)


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
    state["debug"] = debug
    proc.run_as_command()


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
    from dlx.errors import UsageError

    def check() -> None:
        if (spec is None) == (resume is None):
            raise UsageError(
                "give a SPEC to train, or --resume RUN to continue a run (not both)"
                if spec is not None
                else "missing SPEC (or --resume RUN)"
            )
        if resume is not None and set_:
            raise UsageError("--resume continues a run with its logged spec: --set cannot apply")

    call_api(check)
    if workers > 1:
        from dlx.proc.launcher import launch

        if spec is not None:  # a spec error once, here, rather than from every worker
            call_api(lambda: api.check_cluster(spec, set_ or [], workers))

        arguments = ["--debug"] if state["debug"] else []
        arguments += ["train", *([str(spec)] if spec is not None else ["--resume", resume])]
        arguments += [f"--set={value}" for value in set_ or []]
        arguments += [f"--expect={value}" for value in expect or []]
        arguments += [f"--tracking-uri={tracking_uri}"] if tracking_uri else []
        raise typer.Exit(launch(arguments, workers, timeout=worker_timeout, report=render.stderr))
    if resume is not None:
        call_api(
            lambda: api.resume(
                resume,
                tracking_uri=tracking_uri,
                expect=expect or [],
                progress=training_progress(),
            ),
            render.training,
        )
    else:
        assert spec is not None  # `check` asked for a SPEC or --resume
        if api.declares_sweep(spec, set_ or []):
            render.stderr(
                f"note: {spec} has a sweep: section; dlx train trains the spec as written and "
                "ignores it (run the sweep with `dlx sweep`)"
            )
        call_api(
            lambda: api.train(
                spec,
                set_ or [],
                expect or [],
                tracking_uri=tracking_uri,
                progress=training_progress(),
            ),
            render.training,
        )


@app.command()
def sweep(
    spec: SpecPath,
    set_: SetOption = None,
    trials: Annotated[
        int | None,
        typer.Option("--trials", min=1, metavar="N", help="Trials in all; default: the spec's."),
    ] = None,
    jobs: Annotated[
        str,
        typer.Option(
            "--jobs",
            metavar="J",
            help="Trials at once, each in its own process (CPU threads shared among them; "
            "with GPUs one each); auto: one per GPU, else 1.",
        ),
    ] = "1",
    storage: Annotated[
        str | None,
        typer.Option(
            "--storage",
            metavar="URL",
            help="The Optuna storage (any database URL Optuna takes); the same command on "
            "several machines works one sweep. Default: optuna.db beside the MLflow store, a "
            "new sweep each time.",
            show_default=False,
        ),
    ] = None,
    resume: Annotated[
        str | None,
        typer.Option(
            "--resume",
            metavar="SWEEP",
            help="Continue a sweep (its parent run id or a prefix): finished trials kept, "
            "interrupted ones resumed.",
            show_default=False,
        ),
    ] = None,
    join: Annotated[
        str | None,
        typer.Option(
            "--join",
            metavar="SWEEP",
            help="Work a running sweep's trials too (from another machine: same --storage "
            "and MLflow store); one whose first process is gone is taken over, as --resume.",
            show_default=False,
        ),
    ] = None,
    retry_failed: Annotated[
        bool, typer.Option("--retry-failed", help="Rerun the failed trials, same values.")
    ] = False,
    tracking_uri: TrackingUriOption = None,
) -> None:
    """Run the spec's sweep: section: one MLflow parent run, a child run per trial."""
    from dlx import api
    from dlx.errors import UsageError

    def job_count() -> int | None:
        if jobs == "auto":
            return None
        if not jobs.isdigit() or int(jobs) < 1:
            raise UsageError(f"--jobs: expected a positive integer or auto. Received: {jobs!r}")
        return int(jobs)

    def run() -> Any:
        options = api.SweepOptions(
            trials=trials,
            jobs=count,
            storage=storage,
            resume=resume,
            join=join,
            retry_failed=retry_failed,
            tracking_uri=tracking_uri,
            progress=PlainLines(),
            on_start=render.sweep_started,
        )
        if not sys.stdout.isatty():  # CI, a pipe: a line per trial as it ends
            return api.sweep(spec, set_ or [], replace(options, on_trial=render.sweep_trial))
        with render.SweepLive() as table:  # the trials' own progress bars off
            watched = replace(options, on_progress=table.update)
            return api.sweep(spec, set_ or [], watched)

    count = call_api(job_count)
    call_api(run, render.sweep_result)


@app.command("sweep-worker", hidden=True)
def sweep_worker() -> None:
    """One process of `dlx sweep --jobs J` (internal)."""
    from dlx import api

    # On a terminal the sweep that started it shows every trial in its live table.
    on_trial = None if sys.stdout.isatty() else render.sweep_trial
    call_api(lambda: api.sweep_worker(on_trial=on_trial, progress=PlainLines()))


@app.command()
def validate(
    specs: Annotated[list[Path], typer.Argument(help="Spec files.", show_default=False)],
    set_: SetOption = None,
) -> None:
    """Check specs completely (schema, names, arguments, the model, the data sources) without
    reading data."""
    from dlx import api
    from dlx.errors import ExitStatus, relative_path

    def check_each() -> ExitStatus:
        """Every spec, reported one by one; the worst exit status of them all."""
        worst = ExitStatus.OK
        for spec in specs:
            try:
                api.validate(spec, set_ or [])
            except Exception as exc:
                worst = max(worst, ExitStatus(exit_status(exc)))
                continue
            typer.echo(f"{relative_path(spec)}: ok")
        return worst

    worst = call_api(check_each)
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

    render.model(call_api(lambda: api.inspect(spec, set_ or [])), format.value)


@app.command()
def data(
    spec: SpecPath,
    set_: SetOption = None,
    workers: Annotated[
        int,
        typer.Option(
            "--workers", min=1, metavar="N", help="Show how N workers would share the data."
        ),
    ] = 1,
    format: Annotated[
        InspectFormat, typer.Option("--format", "-f", help="Output format.")
    ] = InspectFormat.table,
) -> None:
    """Show a spec's data (splits, files, examples, batch shapes), how workers would share it,
    and whether the input pipeline or the model bounds training. Opens no run."""
    from dlx import api

    render.data_report(call_api(lambda: api.data(spec, set_ or [], workers=workers)), format.value)


class RunsFormat(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"


class CompareFormat(str, Enum):
    table = "table"
    markdown = "markdown"
    csv = "csv"
    json = "json"


_COMPARE_LIMIT = (
    f"At most N runs, the best with --sort; default: all, {render.TABLE_RUNS} in a table."
)

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
    from dlx import api

    listing = call_api(lambda: api.runs(experiment, limit, tracking_uri=tracking_uri))
    render.run_listing(listing, format.value)


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
    limit: Annotated[
        int | None,
        typer.Option("--limit", "-n", min=1, help=_COMPARE_LIMIT, show_default=False),
    ] = None,
    plot: Annotated[
        Path | None, typer.Option("--plot", help="Write the overlaid learning curves to a PNG.")
    ] = None,
    tracking_uri: TrackingUriOption = None,
) -> None:
    """Put runs side by side: the params that differ, final metrics, the best highlighted."""
    from dlx import api

    result = call_api(
        lambda: api.compare(
            references or [],
            experiment=experiment,
            filter=filter,
            sort=sort,
            metrics=metric,
            all_params=all_params,
            limit=render.TABLE_RUNS if limit is None and format == CompareFormat.table else limit,
            diff=format in (CompareFormat.table, CompareFormat.markdown),
            plot=plot,
            tracking_uri=tracking_uri,
        )
    )
    render.comparison(result, format.value)
    if plot is not None and format is not CompareFormat.json:
        typer.echo(f"learning curves: {plot}", err=True)


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

    done = call_api(
        lambda: api.reproduce(
            run, tolerance=tolerance, tracking_uri=tracking_uri, progress=training_progress()
        ),
        render.reproduction,
    )
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

    scores = call_api(
        lambda: api.score(run, spec, set_ or [], embed=embed, tracking_uri=tracking_uri)
    )
    if output is not None:
        call_api(lambda: render.write_errors_csv(output, scores.errors))
    render.scores(scores, output)


@app.command()
def export(
    run: Annotated[str, typer.Argument(help="The run's id, or a unique prefix of it.")],
    format: Annotated[
        str,
        typer.Option("--format", "-f", help="Comma-separated formats: saved_model, onnx, litert."),
    ] = "saved_model,onnx,litert",
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Folder to write to; default: ./export-<run id>.",
            show_default=False,
        ),
    ] = None,
    tolerance: Annotated[
        float,
        typer.Option(
            "--tolerance", min=0.0, help="Largest absolute difference from the Keras model."
        ),
    ] = 1e-5,
    quantize: Annotated[
        str | None,
        typer.Option(
            "--quantize",
            metavar="float16|int8",
            help="Also a quantized LiteRT model (int8: calibrated on training data).",
            show_default=False,
        ),
    ] = None,
    tracking_uri: TrackingUriOption = None,
) -> None:
    """Export a run's model (SavedModel, ONNX, LiteRT), check each export's predictions
    against the Keras model in its own runtime, and log them to the run; exit 1 when one
    differs by more than --tolerance."""
    from dlx import api

    call_api(
        lambda: api.export(
            run,
            format.split(","),
            output=output,
            tolerance=tolerance,
            quantize=quantize,
            tracking_uri=tracking_uri,
        ),
        render.export,
    )


@app.command()
def serve(
    run: Annotated[str, typer.Argument(help="The run's id, or a unique prefix of it.")],
    host: Annotated[str, typer.Option("--host", help="The address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", "-p", min=0, max=65535)] = 8080,
    workers: Annotated[
        int, typer.Option("--workers", min=1, help="Server processes, for concurrent requests.")
    ] = 2,
    max_request_mb: Annotated[
        int,
        typer.Option(
            "--max-request-mb",
            min=1,
            help="The largest request body, in MB (1,048,576 bytes); larger is HTTP 413.",
        ),
    ] = 64,
    tracking_uri: TrackingUriOption = None,
) -> None:
    """Serve a run's model over HTTP with MLflow's scoring server: GET /ping, POST
    /invocations with JSON: inputs or instances (arrays of the model's input shape), or
    dataframe_split (a column per feature) for a model whose input is one row of features
    per example (any other answers it HTTP 400, naming its input's shape). Ctrl-C stops
    it."""
    from dlx import api

    call_api(
        lambda: api.serve(
            run,
            host=host,
            port=port,
            workers=workers,
            max_request_mb=max_request_mb,
            tracking_uri=tracking_uri,
        )
    )


@app.command()
def schema() -> None:
    """Print the JSON Schema of the spec language, for editors."""
    from dlx import api

    typer.echo(json.dumps(api.schema(), indent=2))


def main() -> None:
    """Entry point of the `dlx` console script."""
    try:
        app(prog_name="dlx")
    except SystemExit as stop:
        if "tensorflow" not in sys.modules:
            raise
        from dlx.cli.exiting import exit_at_once

        exit_at_once(stop.code)


if __name__ == "__main__":
    main()
