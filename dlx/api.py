"""The Python API: the one way into dlx, which the `dlx` command calls.

- `validate`: check a spec completely without reading data.
- `inspect`: describe the model a spec builds.
- `data`: describe a spec's data, how workers share it, and whether it bounds training.
- `schema`: the JSON Schema of the spec language.
- `train`: train a spec and record the run in MLflow.
- `sweep`: run a spec's `sweep:` section, one parent run with a child run per trial.
- `check_cluster`: check that a spec can train as a multi-worker job.
- `resume`: continue a run that did not finish.
- `reproduce`: train a recorded run again and compare its final metrics.
- `score`: an autoencoder run's reconstruction errors on some data.
- `export`: a run's model as SavedModel, ONNX and LiteRT, each checked against the Keras model.
- `serve`: a run's model answering JSON predictions over HTTP.
- `runs`: list an experiment's runs, newest first.
- `compare`: put runs side by side.
- `write_baseline`, `check_baseline`: a run's baseline file; a run checked against a baseline.

A façade: each function calls the package that does the work and returns its typed result
(the dataclasses below, importable from here); none prints. Every function raises
`dlx.errors.DlxError` subclasses for problems a user can fix. A finished run that misses an
`--expect` gate, or does not reproduce, raises `ExpectationError` carrying the result.

`SweepOptions` (how `sweep` runs), `SweepResult` and `TrialRow` (what it reports) are
`dlx.sweep`'s, importable from here.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ParamSpec, Protocol, TypeVar

from dlx.errors import ExpectationError

if TYPE_CHECKING:
    from dlx.build.description import ModelDescription
    from dlx.build.model import BuiltModel
    from dlx.deploy.export import Export
    from dlx.spec import LoadedSpec
    from dlx.sweep import SweepOptions, SweepResult, TrialRow
    from dlx.track.baseline import BaselineCheck, WrittenBaseline
    from dlx.track.compare import Comparison
    from dlx.track.read import RunSummary
    from dlx.train.data_report import DataReport
    from dlx.train.progress import ProgressListener
    from dlx.train.reproduction import Reproduction
    from dlx.train.runner import TrainResult
    from dlx.train.scoring import Scores

__all__ = [
    "BaselineCheck",
    "Comparison",
    "DataReport",
    "Export",
    "ModelDescription",
    "ProgressListener",
    "Reproduction",
    "RunListing",
    "Scores",
    "SweepOptions",
    "SweepResult",
    "TrainResult",
    "TrialRow",
    "Validated",
    "WrittenBaseline",
    "check_baseline",
    "check_cluster",
    "compare",
    "data",
    "declares_sweep",
    "export",
    "inspect",
    "reproduce",
    "resume",
    "runs",
    "schema",
    "score",
    "serve",
    "sweep",
    "sweep_worker",
    "train",
    "validate",
    "write_baseline",
]

_RESULT_TYPES = {
    "BaselineCheck": "dlx.track.baseline",
    "Comparison": "dlx.track.compare",
    "DataReport": "dlx.train.data_report",
    "Export": "dlx.deploy.export",
    "ModelDescription": "dlx.build.description",
    "ProgressListener": "dlx.train.progress",
    "Reproduction": "dlx.train.reproduction",
    "Scores": "dlx.train.scoring",
    "SweepOptions": "dlx.sweep.options",
    "SweepResult": "dlx.sweep.options",
    "TrainResult": "dlx.train.runner",
    "TrialRow": "dlx.sweep.options",
    "WrittenBaseline": "dlx.track.baseline",
}


def __getattr__(name: str) -> object:
    """The result types, imported when first asked for: `from dlx.api import TrainResult`
    (importing `dlx.api` stays light: no TensorFlow, Keras, MLflow, `dlx.spec` or `dlx.sweep`)."""
    if name in _RESULT_TYPES:
        import importlib

        return getattr(importlib.import_module(_RESULT_TYPES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


Overrides = list[str] | tuple[str, ...]
"""`dotted.path=value` overrides of a spec (`--set`)."""


@dataclass
class Validated:
    """A spec that loaded, built and whose training components resolved."""

    loaded: LoadedSpec
    built: BuiltModel


def validate(
    path: str | Path,
    overrides: Overrides = (),
    *,
    check_data: bool = True,
    check_sweep: bool = True,
) -> Validated:
    """Check a spec completely without reading data: schema, names, arguments, the model,
    and the data section's sources (names, files and folders, CSV headers, Python functions).

    Args:
        path: the spec's YAML file.
        overrides: `dotted.path=value` overrides.
        check_data: whether to check the data section's sources too (`inspect` does not:
            it describes the model, which a missing data file does not change).
        check_sweep: whether to check the `sweep:` section too (`dlx.sweep.checks`): its
            paths and numbers, its pruner and sampler (as Optuna makes them), the spec at each
            choice and both ends of each range, and its metric.

    Raises:
        SpecError: every problem found, each at its file, line and column.
    """
    from dlx.errors import SpecError
    from dlx.spec import load_spec
    from dlx.train.validation import check_spec

    loaded = load_spec(path, overrides)
    built, problems = check_spec(loaded, check_data)
    if check_sweep and loaded.spec.sweep is not None:
        from dlx.sweep import sweep_problems

        problems += sweep_problems(path, overrides, loaded, built)
    if problems or built is None:
        raise SpecError(problems)
    return Validated(loaded, built)


def inspect(path: str | Path, overrides: Overrides = ()) -> ModelDescription:
    """Describe the model a spec builds: layers, output shapes and parameter counts.

    Returns:
        A `ModelDescription` (`as_dict()`: docs/spec.md section 8). Layers of nested models
        (an autoencoder's encoder and decoder, a GAN's two networks) are listed by their path,
        `encoder/conv2d`.
    """
    from dlx.build.description import describe

    validated = validate(path, overrides, check_data=False, check_sweep=False)
    loaded = validated.loaded
    return describe(loaded.name, loaded.spec.model.kind, validated.built.networks)


def data(path: str | Path, overrides: Overrides = (), *, workers: int = 1) -> DataReport:
    """Describe a spec's data without opening a run: each split's files, examples, classes
    and batch shapes; how `workers` workers would share the training split; the examples per
    second of the input pipeline alone against those of the model training, and which bounds
    training (docs/spec.md section 8).

    Raises:
        SpecError: the spec is invalid, or its data cannot be read or does not fit its model.
    """
    from dlx.train.data_report import data_report

    return data_report(validate(path, overrides, check_sweep=False).loaded, workers)


def schema() -> dict[str, object]:
    """The JSON Schema of the spec language: its sections, and what `dlx validate` checks of
    them without data: the data sources a spec may name with their arguments, the pruners."""
    from dlx.data.sources import source_arguments
    from dlx.spec import json_schema
    from dlx.sweep.space import PRUNER_ARGUMENTS

    return json_schema(source_arguments(), PRUNER_ARGUMENTS)


P = ParamSpec("P")


class _Gated(Protocol):
    run_id: str
    failures: list[str]


G = TypeVar("G", bound=_Gated)


def _gated(training: Callable[P, G]) -> Callable[P, G]:
    """Make a training call raise `ExpectationError` for a run that missed an `--expect` gate.

    Only the chief reports it: another worker's result is not the run's.
    """

    @functools.wraps(training)
    def gated(*args: P.args, **kwargs: P.kwargs) -> G:
        result = training(*args, **kwargs)
        if result.run_id and result.failures:
            message = "\n".join(f"expectation failed: {failure}" for failure in result.failures)
            raise ExpectationError(message, result=result, failures=result.failures)
        return result

    return gated


@_gated
def train(
    path: str | Path,
    overrides: Overrides = (),
    expect: list[str] | tuple[str, ...] = (),
    *,
    progress: ProgressListener | None = None,
    tracking_uri: str | None = None,
) -> TrainResult:
    """Train a spec and record the run in MLflow (docs/spec.md sections 3-7).

    Args:
        path: the spec's YAML file.
        overrides: `dotted.path=value` overrides.
        expect: `METRIC>=VALUE` gates on the final metrics; unmet ones raise
            `ExpectationError` (the run is recorded either way).
        progress: follows the training's epochs (`dlx.train.progress`); none by default.
        tracking_uri: the store when the spec names none; default: `$MLFLOW_TRACKING_URI`,
            else `./mlflow.db`.

    Returns:
        The run's `TrainResult`.

    Raises:
        SpecError: the spec is invalid.
        TrainingFailed: training raised; the run is recorded FAILED.
        ExpectationError: an `--expect` gate was not met; its `result` is the TrainResult.
    """
    from dlx.spec import load_spec
    from dlx.train.expectations import parse_expectations
    from dlx.train.runner import train as run_training

    expectations = parse_expectations(list(expect))
    loaded = load_spec(path, overrides)
    return run_training(loaded, expectations, progress=progress, tracking_uri=tracking_uri)


def declares_sweep(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> bool:
    """Whether a spec has a `sweep:` section (which `dlx train` ignores); `False` for a spec
    that does not load (training says why)."""
    from dlx.errors import SpecError
    from dlx.spec import load_spec

    try:
        return load_spec(path, overrides).spec.sweep is not None
    except SpecError:
        return False


def sweep(
    path: str | Path,
    overrides: list[str] | tuple[str, ...] = (),
    options: SweepOptions | None = None,
) -> SweepResult:
    """Run a spec's `sweep:` section (docs/spec.md section 10): an Optuna study, recorded as
    one MLflow parent run with a complete dlx run per trial as its child.

    The spec, with its sweep, is validated completely first (`validate`), at every choice
    and both ends of every range.

    Args:
        path: the spec's YAML file.
        overrides: `dotted.path=value` overrides, applied to every trial.
        options: how to run it (`SweepOptions`: trials, jobs, storage, resume or join, retry
            failed trials, the MLflow store, and the callbacks that report its progress);
            default: `SweepOptions()`, a new sweep of the section's trials, one at a time.

    Returns:
        A `SweepResult`: every counted trial and the best.

    Raises:
        SpecError: the spec or its sweep is invalid (nothing is run).
        UsageError: no such sweep to resume or join, or conflicting options.
        Interrupted: Ctrl-C or SIGTERM: the parent run is KILLED, the trial in progress is
            resumed by `resume`.
    """
    from dlx.errors import UsageError
    from dlx.sweep import SweepOptions, run_sweep

    options = options or SweepOptions()
    if options.resume is not None and options.join is not None:
        raise UsageError("give --resume SWEEP or --join SWEEP, not both")
    if options.retry_failed and options.resume is None:
        raise UsageError("--retry-failed reruns the failed trials of a sweep: give --resume SWEEP")
    validated = validate(path, overrides, check_data=True)
    loaded = validated.loaded
    if loaded.spec.sweep is None:
        raise loaded.error((), "the spec has no sweep: section to run (docs/spec.md section 10)")
    return run_sweep(loaded, list(overrides), options)


def sweep_worker(
    on_trial: Callable[[TrialRow], None] | None = None,
    progress: ProgressListener | None = None,
) -> None:
    """One `--jobs` worker of a sweep: work its study until it has its trials.

    Its `dlx.sweep.SweepConfig` is the JSON in `$DLX_SWEEP_WORKER`, set by the sweep
    that started it.

    Args:
        on_trial: called with each trial's `TrialRow` as it ends.
        progress: follows each trial's epochs; none by default.

    Raises:
        UsageError: not started by a sweep (no `$DLX_SWEEP_WORKER`).
    """
    from dlx.sweep.workers import work_as_worker

    work_as_worker(on_trial, progress)


def check_cluster(path: str | Path, overrides: list[str] | tuple[str, ...], workers: int) -> None:
    """Check, without TensorFlow, that a spec can train as a job of `workers` workers.

    Raises:
        SpecError: the spec is invalid, or its strategy cannot run on several workers.
    """
    from dlx.spec import load_spec
    from dlx.train.strategy import check_strategy

    loaded = load_spec(path, overrides)
    check_strategy(loaded, loaded.spec.runtime.strategy, workers)


@_gated
def resume(
    reference: str,
    *,
    tracking_uri: str | None = None,
    expect: list[str] | tuple[str, ...] = (),
    progress: ProgressListener | None = None,
) -> TrainResult:
    """Continue a run that did not finish (`dlx train --resume`), into the same MLflow run.

    The run's logged spec is trained again from the run's checkpoints (its `dlx.checkpoints`
    tag): from the epoch after the last one saved, with the data in the order an uninterrupted
    run reads it there. Epochs whose metrics the run already has are not logged again, epochs
    journaled but never sent (a kill, an outage) are sent, and the run ends FINISHED.

    A run may be resumed when it is FAILED or KILLED, or RUNNING while the process that ran it
    is gone (`kill -9`, a lost machine). In a multi-worker job every worker resumes it; only
    the chief writes.

    Args:
        reference: the run's id, or a unique prefix of it.
        tracking_uri: the store; default: `$MLFLOW_TRACKING_URI`, else `./mlflow.db`.
        expect: `METRIC>=VALUE` gates on the final metrics, as for `train`.
        progress: follows the training's epochs; none by default.

    Returns:
        The `TrainResult` of the same run.

    Raises:
        UsageError: the run finished, is still running, or has no checkpoints to resume from.
        ExpectationError: the resumed run finished but missed an `--expect` gate.
    """
    from dlx.track.read import open_store
    from dlx.train.expectations import parse_expectations
    from dlx.train.resume import resume_point
    from dlx.train.runner import train as run_training

    expectations = parse_expectations(list(expect))
    store = open_store(tracking_uri)
    (run,) = store.find([reference])
    point = resume_point(run, store.uri)
    return run_training(store.logged_spec(run), expectations, progress=progress, resume=point)


def reproduce(
    reference: str,
    *,
    tolerance: float = 0.0,
    tracking_uri: str | None = None,
    progress: ProgressListener | None = None,
) -> Reproduction:
    """Train a recorded run's logged spec again and compare every final metric.

    The new run goes to the same store, tagged `dlx.reproduction_of`. Relative paths in the
    spec resolve against the folder the original spec was in when that folder exists here,
    else against the working directory; the logged spec and its seed are all that is needed.

    Args:
        reference: the run's id, or a unique prefix of it.
        tolerance: the largest absolute difference counted as equal (default: exactly equal).
        tracking_uri: the store; default: `$MLFLOW_TRACKING_URI`, else `./mlflow.db`.
        progress: follows the training's epochs; none by default.

    Returns:
        The `Reproduction`, when every final metric is within `tolerance`.

    Raises:
        ExpectationError: a metric differs by more than `tolerance`; its `result` is the
            `Reproduction`, its `failures` the metrics that differ.
    """
    from dlx.track.read import open_store
    from dlx.train.reproduction import reproduce as reproduce_run

    store = open_store(tracking_uri)
    (original,) = store.find([reference])
    return reproduce_run(store, original, tolerance, progress)


def score(
    reference: str,
    spec: str | Path | None = None,
    overrides: Overrides = (),
    *,
    embed: str | Path | None = None,
    tracking_uri: str | None = None,
) -> Scores:
    """Score data by an autoencoder run's reconstruction error, for anomaly detection.

    The data is a spec's `data:` section, read as training reads it: its test split when it
    has one, else all of the source. The spec is `spec`, or by default the run's own logged
    spec; `overrides` change it (e.g. `data.source={npz: {path: new.npz}}`).

    Args:
        reference: the run's id, or a unique prefix of it.
        spec: a spec file whose `data:` section is scored; default: the run's logged spec.
        overrides: `dotted.path=value` overrides of that spec.
        embed: an `.npy` file to write the run's logged encoder's outputs (embeddings) to.
        tracking_uri: the store; default: `$MLFLOW_TRACKING_URI`, else `./mlflow.db`.

    Returns:
        The `Scores`: one reconstruction error per example, in the data's order.

    Raises:
        UsageError: the run is not an autoencoder's, or logged no model.
        SpecError: the spec or its data cannot be read.
    """
    from dlx.spec import load_spec
    from dlx.track.read import open_store
    from dlx.train.scoring import score_run

    store = open_store(tracking_uri)
    (run,) = store.find([reference])
    loaded = store.logged_spec(run, overrides) if spec is None else load_spec(spec, overrides)
    return score_run(store, run, loaded, embed)


def export(
    reference: str,
    formats: list[str] | tuple[str, ...] = ("saved_model", "onnx", "litert"),
    *,
    output: str | Path | None = None,
    tolerance: float = 1e-5,
    quantize: str | None = None,
    tracking_uri: str | None = None,
) -> Export:
    """Export a run's model to each format, check each against the Keras model in its own
    runtime, and log the files and the differences to the same run (docs/spec.md section 10).

    The predictions are compared on the run's own data: its test split (else its validation,
    else its training examples), at most 1,000 examples; a GAN's generator on latent vectors
    drawn from the spec's seed. An autoencoder's encoder is exported beside its model.

    Args:
        reference: the run's id, or a unique prefix of it.
        formats: names of `dlx.deploy.export.FORMATS`: `saved_model`, `onnx`, `litert`.
        output: the folder to write to; default: `./export-<run id>`.
        tolerance: the largest absolute difference allowed between an export's predictions
            and the Keras model's (not applied to quantized models).
        quantize: `float16` or `int8`: also a quantized LiteRT model (int8: calibrated on 200
            training examples), its metric recorded beside the float one.
        tracking_uri: the store; default: `$MLFLOW_TRACKING_URI`, else `./mlflow.db`.

    Returns:
        The `Export`: each format's check.

    Raises:
        UsageError: an unknown format, a format that cannot carry the model's inputs, or a run
            that logged no model.
        ExportMismatch: an export differs by more than `tolerance` (exit status 1).
    """
    from dlx.deploy.logged_run import export_logged_run
    from dlx.track.read import open_store

    store = open_store(tracking_uri)
    (run,) = store.find([reference])
    return export_logged_run(
        store, run, formats, output=output, tolerance=tolerance, quantize=quantize
    )


def serve(
    reference: str,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    workers: int = 2,
    max_request_mb: int = 64,
    tracking_uri: str | None = None,
) -> None:
    """Serve a run's logged model over HTTP until interrupted: MLflow's scoring server
    (`GET /ping`, `POST /invocations` with JSON `inputs`, `instances` or `dataframe_split`),
    which answers a request that does not fit the model's signature with HTTP 400, a body
    over `max_request_mb` with HTTP 413, and JSON nested deeper than 64 levels with HTTP 400.

    Args:
        reference: the run's id, or a unique prefix of it.
        host: the address to listen on.
        port: the port to listen on.
        workers: server processes, each with the model, for concurrent requests.
        max_request_mb: the largest request body, in MB of 1,048,576 bytes (64: over
            100,000 8x8 digits as JSON, which MLflow takes most of a minute to read).
        tracking_uri: the store; default: `$MLFLOW_TRACKING_URI`, else `./mlflow.db`.

    Raises:
        UsageError: no such run, the run logged no model or is still running, the port is
            taken, or `max_request_mb` is not positive.
    """
    from dlx.deploy.serve import serve_run
    from dlx.track.read import open_store

    store = open_store(tracking_uri)
    (run,) = store.find([reference])
    serve_run(
        store.uri,
        run.info.run_id,
        host=host,
        port=port,
        workers=workers,
        max_request_mb=max_request_mb,
    )


@dataclass
class RunListing:
    """An experiment's runs, newest first (`dlx runs`)."""

    experiment: str
    runs: list[RunSummary]
    total: int | None
    """How many runs the experiment has; None when more than those listed, but counting them
    would mean reading them all (a tracking server)."""


def runs(
    experiment: str | None = None, limit: int = 20, *, tracking_uri: str | None = None
) -> RunListing:
    """List an experiment's runs, newest first: id, name, status, start, duration, metrics.

    Args:
        experiment: the experiment's name; default: the one with the newest run.
        limit: how many runs, at most (`total` says how many there are).
        tracking_uri: the store; default: `$MLFLOW_TRACKING_URI`, else `./mlflow.db`.

    Raises:
        UsageError: no store there, or no experiment of that name.
        DlxError: the store is empty or cannot be read.
    """
    from dlx.track.read import RunSummary, nested, open_store
    from dlx.track.tags import PARENT_RUN

    store = open_store(tracking_uri)
    found = store.experiment(experiment)
    listed = store.runs(found, limit=limit + 1, params="none", tags=[PARENT_RUN])
    total = len(listed) if len(listed) <= limit else store.count_runs(found)
    summaries = [RunSummary.of(run) for run in nested(listed[:limit])]
    return RunListing(found.name, summaries, total)


def compare(
    references: list[str] | tuple[str, ...] = (),
    *,
    experiment: str | None = None,
    filter: str = "",
    sort: str | None = None,
    metrics: list[str] | None = None,
    all_params: bool = False,
    limit: int | None = None,
    diff: bool = True,
    plot: str | Path | None = None,
    tracking_uri: str | None = None,
) -> Comparison:
    """Put runs side by side: the params that differ, final metrics, the best of each.

    A sweep's parent run alone stands for its trials: they are compared, sorted by the sweep's
    metric (unless `sort` says otherwise), with the swept values as the params that differ; a
    pruned trial's status is PRUNED.

    Args:
        references: run ids (or unique prefixes), or spec files (`.yaml`, `.yml`), which stand
            for their experiment in their store; a sweep's parent run id, for its trials;
            default: the runs of the experiment.
        experiment: the experiment's name; default: a spec's, else the one with the newest run.
        filter: an MLflow filter on the experiment's runs, e.g. `"params.train.epochs = '5'"`.
        sort: sort by this final metric, best first, and find the epoch it was best at.
        metrics: only these metric columns; default: every metric.
        all_params: every param column, not only those whose values differ.
        limit: keep the first `limit` runs, the best if sorted, else the newest (`total` counts
            all; the params that differ and the best values are of all). Default: all.
        diff: with two runs, also their metric deltas and the diff of their logged specs.
        plot: a PNG file to write the kept runs' overlaid learning curves to.
        tracking_uri: the store; default: a spec's, else `$MLFLOW_TRACKING_URI`, else `./mlflow.db`.

    Returns:
        A `Comparison`, with `deltas` and `spec_diff` for two runs.

    Raises:
        UsageError: no store there, no experiment of that name, or a run id that matches none.
        SpecError: a spec given as a reference is invalid.
        DlxError: no runs to compare.
    """
    from dlx.track.compare import compare_references

    return compare_references(
        references,
        experiment=experiment,
        filter=filter,
        sort=sort,
        metrics=metrics,
        all_params=all_params,
        limit=limit,
        diff=diff,
        plot=plot,
        tracking_uri=tracking_uri,
    )


def write_baseline(
    reference: str, output: str | Path | None = None, *, tracking_uri: str | None = None
) -> WrittenBaseline:
    """Write a FINISHED run's baseline file (JSON, docs/spec.md section 11): its final metrics
    and histories, and what produced them (spec digest and params, data fingerprint, seed,
    versions, git commit).

    Args:
        reference: a run id (or unique prefix); or a spec file, for its newest FINISHED run.
        output: the file; default: the spec's `baseline.file`, else
            `<spec's stem>.baseline.json` beside the spec.
        tracking_uri: the store; default: a spec's, else `$MLFLOW_TRACKING_URI`, else `./mlflow.db`.

    Raises:
        UsageError: no such run, a run that is not FINISHED, or a file that cannot be written.
    """
    from dlx.track.baseline import write

    return write(reference, output, tracking_uri=tracking_uri)


def check_baseline(
    reference: str,
    against: str | None = None,
    *,
    tolerances: dict[str, str] | None = None,
    plot: str | Path | None = None,
    tracking_uri: str | None = None,
) -> BaselineCheck:
    """Check a run against a baseline: each final metric's verdict, what changed, the gate.

    Args:
        reference: a run id (or unique prefix); or a spec file, for its newest FINISHED run.
        against: a baseline file, a run id, or an MLflow filter (its newest FINISHED match,
            e.g. `"tags.mlflow.source.git.branch = 'main'"`); default: the spec's baseline file.
        tolerances: metric -> tolerance (`-0.005`, `+2%`), added to the spec's `baseline.gate`.
        plot: a PNG to draw each gated metric's curve in, baseline against now.
        tracking_uri: the store; default: a spec's, else `$MLFLOW_TRACKING_URI`, else `./mlflow.db`.

    Raises:
        ExpectationError: a gated metric is worse beyond its tolerance, or a run identical to
            the baseline's (spec, data, seed, versions; deterministic) differs at all; its
            `result` is the `BaselineCheck`.
        UsageError: a baseline that cannot be read or found, or a bad tolerance.
    """
    from dlx.track.baseline import check

    return check(reference, against, tolerances=tolerances, plot=plot, tracking_uri=tracking_uri)
