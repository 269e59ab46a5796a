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

Every function returns data and raises `dlx.errors.DlxError` subclasses for problems a user can
fix; none prints. A finished run that misses an `--expect` gate, or does not reproduce, raises
`ExpectationError` carrying the result.

`SweepOptions` (how `sweep` runs), `SweepResult` and `TrialRow` (what it reports) are
`dlx.sweep`'s, importable from here.
"""

from __future__ import annotations

import functools
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dlx.errors import ExpectationError
from dlx.spec import LoadedSpec, load_spec
from dlx.sweep import SweepOptions, SweepResult, TrialRow

if TYPE_CHECKING:
    from dlx.track.compare import Comparison
    from dlx.track.read import RunSummary
    from dlx.train.data_report import DataReport


@dataclass
class Validated:
    """A spec that loaded, built and whose training components resolved."""

    loaded: LoadedSpec
    built: Any  # dlx.build.model.BuiltModel


def validate(
    path: str | Path,
    overrides: list[str] | tuple[str, ...] = (),
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
        check_sweep: whether to check the `sweep:` section too: its paths, its pruner, and
            the spec at each choice and both ends of each range (a model built for each).

    Raises:
        SpecError: every problem found, each at its file, line and column.
    """
    from dlx.errors import SpecError

    loaded = load_spec(path, overrides)
    built, problems = _check(loaded, check_data)
    if check_sweep and loaded.spec.sweep is not None:
        from dlx.sweep import sweep_problems

        problems += sweep_problems(
            path, overrides, loaded, lambda trial: _check(trial, check_data=False)[1]
        )
    if problems:
        raise SpecError(problems)
    return Validated(loaded, built)


def _check(loaded: LoadedSpec, check_data: bool) -> tuple[Any, list[Any]]:
    """Build a loaded spec's model and resolve its training components: the model built (or
    `None`), and every problem found."""
    from dlx.build.compile import build_compile_args
    from dlx.build.model import build_model
    from dlx.data import SourceContext, check_sources
    from dlx.errors import SpecError
    from dlx.tensorflow_import import import_tensorflow_quietly
    from dlx.track.logged_models import load_run_model

    import_tensorflow_quietly()
    import keras

    # Layer names start afresh: the same spec, the same names. (Python's own collector frees
    # old models; a full collection here would cost half a second per call.)
    keras.utils.clear_session(free_memory=False)
    problems = []
    built = None
    try:
        built = build_model(loaded, load_run_model)
    except SpecError as exc:
        problems.extend(exc.problems)
    output_names = list(built.model.output_names) if built is not None else None
    try:
        build_compile_args(loaded, output_names)
    except SpecError as exc:
        problems.extend(exc.problems)
    if check_data and loaded.spec.data is not None:
        context = SourceContext(base_dir=loaded.base_dir, seed=loaded.spec.seed)
        for error in check_sources(loaded.spec.data, context):
            problems.append(loaded.document.problem(error.path, error.message))
    return built, problems


def inspect(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """Describe the model a spec builds: layers, output shapes and parameter counts.

    Returns:
        `{"name", "kind", "params", "trainable_params", "non_trainable_params", "layers": [{"name",
        "class_name", "output_shape", "params"}, ...]}` (docs/spec.md section 8). Layers of nested
        models (an autoencoder's encoder and decoder, a GAN's two networks) are listed by their
        path, `encoder/conv2d`.
    """
    validated = validate(path, overrides, check_data=False, check_sweep=False)
    built = validated.built
    models = [built.generator, built.discriminator] if built.kind == "gan" else [built.model]
    layers: list[dict[str, Any]] = []
    for model in models:
        prefix = f"{model.name}/" if len(models) > 1 else ""
        layers.extend(_layers(model, prefix))
    trainable = sum(_count(m.trainable_weights) for m in models)
    frozen = sum(_count(m.non_trainable_weights) for m in models)
    return {
        "name": validated.loaded.name,
        "kind": built.kind,
        "params": trainable + frozen,
        "trainable_params": trainable,
        "non_trainable_params": frozen,
        "layers": layers,
    }


def data(
    path: str | Path, overrides: list[str] | tuple[str, ...] = (), *, workers: int = 1
) -> DataReport:
    """Describe a spec's data without opening a run: each split's files, examples, classes
    and batch shapes; how `workers` workers would share the training split; the examples per
    second of the input pipeline alone against those of the model training, and which bounds
    training (docs/spec.md section 8).

    Raises:
        SpecError: the spec is invalid, or its data cannot be read or does not fit its model.
    """
    from dlx.train.data_report import data_report

    return data_report(validate(path, overrides, check_sweep=False).loaded, workers)


def _layers(model: Any, prefix: str) -> list[dict[str, Any]]:
    import keras

    rows = []
    for layer in model.layers:
        if isinstance(layer, keras.Model) and layer.layers:
            rows.extend(_layers(layer, f"{prefix}{layer.name}/"))
            continue
        rows.append(
            {
                "name": prefix + layer.name,
                "class_name": type(layer).__name__,
                "output_shape": _shape(layer.output),
                "params": _count(layer.weights),
            }
        )
    return rows


def _shape(output: Any) -> Any:
    if isinstance(output, (list, tuple)):
        return [_shape(o) for o in output]
    return list(output.shape)


def _count(weights: list[Any]) -> int:
    import math

    return sum(math.prod(w.shape) for w in weights)


def schema() -> dict[str, Any]:
    """The JSON Schema of the spec language."""
    from dlx.spec import json_schema

    return json_schema()


def _gated(training: Callable[..., Any]) -> Callable[..., Any]:
    """Make a training call raise `ExpectationError` for a run that missed an `--expect` gate.

    Only the chief reports it: another worker's result is not the run's.
    """

    @functools.wraps(training)
    def gated(*args: Any, **kwargs: Any) -> Any:
        result = training(*args, **kwargs)
        if result.run_id and result.failures:
            message = "\n".join(f"expectation failed: {failure}" for failure in result.failures)
            raise ExpectationError(message, result=result, failures=result.failures)
        return result

    return gated


@_gated
def train(
    path: str | Path,
    overrides: list[str] | tuple[str, ...] = (),
    expect: list[str] | tuple[str, ...] = (),
    *,
    live: bool | None = None,
    tracking_uri: str | None = None,
) -> Any:
    """Train a spec and record the run in MLflow (docs/spec.md sections 3-7).

    Args:
        path: the spec's YAML file.
        overrides: `dotted.path=value` overrides.
        expect: `METRIC>=VALUE` gates on the final metrics; unmet ones raise
            `ExpectationError` (the run is recorded either way).
        live: a live progress bar; default: when stdout is a terminal.
        tracking_uri: the store when the spec names none; default: `$MLFLOW_TRACKING_URI`,
            else `./mlflow.db`.

    Returns:
        A `dlx.train.runner.TrainResult`.

    Raises:
        SpecError: the spec is invalid.
        TrainingFailed: training raised; the run is recorded FAILED.
        ExpectationError: an `--expect` gate was not met; its `result` is the TrainResult.
    """
    from dlx.train.expectations import parse_expectations
    from dlx.train.runner import train as run_training

    expectations = parse_expectations(list(expect))
    loaded = load_spec(path, overrides)
    return run_training(loaded, expectations, live=live, tracking_uri=tracking_uri)


def declares_sweep(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> bool:
    """Whether a spec has a `sweep:` section (which `dlx train` ignores); `False` for a spec
    that does not load (training says why)."""
    from dlx.errors import SpecError

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
    from dlx.sweep import run_sweep

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


def sweep_worker(on_trial: Callable[[TrialRow], None] | None = None) -> None:
    """One `--jobs` worker of a sweep: work its study until it has its trials.

    Its `dlx.sweep.SweepConfig` is the JSON in `$DLX_SWEEP_WORKER`, set by the sweep
    that started it.

    Args:
        on_trial: called with each trial's `TrialRow` as it ends.

    Raises:
        UsageError: not started by a sweep (no `$DLX_SWEEP_WORKER`).
    """
    from dlx.errors import UsageError
    from dlx.sweep import WORKER_CONFIG, SweepConfig, die_with_coordinator, work

    config = os.environ.get(WORKER_CONFIG)
    if not config:
        raise UsageError(f"dlx sweep-worker is started by dlx sweep --jobs (${WORKER_CONFIG})")
    # Ctrl-C on a terminal reaches the worker, and then the sweep passes it on too: the
    # second must not cut short the recording of the trial's run as KILLED.
    signal.signal(signal.SIGINT, _interrupt_once)
    worker = SweepConfig.from_json(config)
    die_with_coordinator(worker)
    work(worker, live=False, on_trial=on_trial)


def _interrupt_once(signum: int, frame: Any) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise KeyboardInterrupt


def check_cluster(path: str | Path, overrides: list[str] | tuple[str, ...], workers: int) -> None:
    """Check, without TensorFlow, that a spec can train as a job of `workers` workers.

    Raises:
        SpecError: the spec is invalid, or its strategy cannot run on several workers.
    """
    from dlx.train.strategy import check_strategy

    loaded = load_spec(path, overrides)
    check_strategy(loaded, loaded.spec.runtime.strategy, workers)


@_gated
def resume(
    reference: str,
    *,
    tracking_uri: str | None = None,
    expect: list[str] | tuple[str, ...] = (),
    live: bool | None = None,
) -> Any:
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
        live: a live progress bar; default: when stdout is a terminal.

    Returns:
        A `dlx.train.runner.TrainResult` for the same run.

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
    return run_training(_logged_spec(store, run), expectations, live=live, resume=point)


def _logged_spec(store: Any, run: Any, overrides: list[str] | tuple[str, ...] = ()) -> LoadedSpec:
    """A run's logged spec, its relative paths resolved against the folder the original spec
    was in when that folder exists here, else against the working directory."""
    from dlx.spec import load_spec_text

    source = Path(run.data.tags.get("mlflow.source.name") or "spec.yaml")
    folder = source.parent if source.parent.is_dir() else Path.cwd()
    return load_spec_text(store.spec_text(run.info.run_id), folder / source.name, overrides)


@dataclass
class Reproduction:
    """A run trained again from its logged spec, and how its final metrics compare."""

    original_run_id: str
    result: Any  # dlx.train.runner.TrainResult
    rows: list[tuple[str, float | None, float | None]]
    """(metric, original value, reproduced value) for every metric either run has."""
    tolerance: float
    placement: tuple[str, str] = ("", "")
    """How the original and the reproduction ran (`strategy, N replicas, N workers`)."""
    data_changed: str | None = None
    """When the data's fingerprint differs from the original run's: what changed, in words."""

    @property
    def mismatches(self) -> list[str]:
        """The metrics the reproduction trained that differ from the original's, or that the
        original lacks. Metrics only the original has were logged to it by other commands
        (`dlx export`'s checks, a sweep's mean and spread of its seeds): shown, not compared."""
        return [
            name
            for name, before, after in self.rows
            if after is not None and (before is None or abs(after - before) > self.tolerance)
        ]


def reproduce(
    reference: str,
    *,
    tolerance: float = 0.0,
    tracking_uri: str | None = None,
    live: bool | None = None,
) -> Reproduction:
    """Train a recorded run's logged spec again and compare every final metric.

    The new run goes to the same store, tagged `dlx.reproduction_of`. Relative paths in the
    spec resolve against the folder the original spec was in when that folder exists here,
    else against the working directory; the logged spec and its seed are all that is needed.

    Args:
        reference: the run's id, or a unique prefix of it.
        tolerance: the largest absolute difference counted as equal (default: exactly equal).
        tracking_uri: the store; default: `$MLFLOW_TRACKING_URI`, else `./mlflow.db`.
        live: a live progress bar; default: when stdout is a terminal.

    Returns:
        The `Reproduction`, when every final metric is within `tolerance`.

    Raises:
        ExpectationError: a metric differs by more than `tolerance`; its `result` is the
            `Reproduction`, its `failures` the metrics that differ.
    """
    from dlx.track.read import open_store
    from dlx.track.tags import INTRA_OP_THREADS, REPLICAS, REPRODUCTION_OF, STRATEGY, WORKERS
    from dlx.train.runner import INTRA_OP_THREADS_VARIABLE
    from dlx.train.runner import train as run_training

    store = open_store(tracking_uri)
    (original,) = store.find([reference])
    run_id = original.info.run_id
    loaded = _logged_spec(store, original)
    if threads := original.data.tags.get(INTRA_OP_THREADS):  # read when TensorFlow starts
        os.environ.setdefault(INTRA_OP_THREADS_VARIABLE, threads)
    result = run_training(loaded, live=live, tracking_uri=store.uri, tags={REPRODUCTION_OF: run_id})
    names = sorted(set(original.data.metrics) | set(result.metrics))
    rows = [(n, original.data.metrics.get(n), result.metrics.get(n)) for n in names]
    tags = original.data.tags
    placement = (
        _placement(
            tags.get(STRATEGY, "?"),
            int(tags.get(REPLICAS, 1)),
            int(tags.get(WORKERS, 1)),
        ),
        _placement(result.strategy, result.replicas, result.workers),
    )
    done = Reproduction(run_id, result, rows, tolerance, placement, _data_changed(tags, result))
    mismatches = done.mismatches
    if not mismatches:
        return done
    message = (
        f"not reproduced: {len(mismatches)} metric(s) differ by more than {tolerance:g}: "
        + ", ".join(sorted(mismatches))
    )
    before, after = placement
    if before != after:
        message += (
            f"\nnote: the original ran on {before}, the reproduction on {after}; another "
            "placement draws its random numbers (dropout) per replica and sums in another "
            "order (run it as the original ran, e.g. with the same TF_CONFIG, to compare "
            "like with like)"
        )
    raise ExpectationError(message, result=done, failures=mismatches)


def _data_changed(tags: dict[str, str], result: Any) -> str | None:
    """Whether the data read now is not the data the original run read, in words."""
    from dlx.track.tags import DATA_FINGERPRINT, DATA_FINGERPRINT_KIND

    before, after = tags.get(DATA_FINGERPRINT), result.data_fingerprint
    if before is None or before == after:
        return None
    text = f"the data changed since the run: fingerprint {before[:16]} != {after[:16]}"
    if tags.get(DATA_FINGERPRINT_KIND) == "files":
        text += (
            " (data.fingerprint: files compares the files' paths, sizes and modification "
            "times: files copied or checked out again count as changed even with the same "
            "bytes; data.fingerprint: content compares their bytes)"
        )
    return text


def _placement(strategy: str, replicas: int, workers: int) -> str:
    text = f"{strategy}, {replicas} replica{'s' if replicas != 1 else ''}"
    return text + (f", {workers} workers" if workers > 1 else "")


@dataclass
class Scores:
    """An autoencoder run's reconstruction errors on some data (`dlx score`)."""

    run_id: str
    split: str
    """Which data was scored: `test` (the spec's test split) or `all` (the whole source)."""
    errors: Any  # numpy.ndarray, one float per example
    threshold: float | None
    """The run's `reconstruction_error_p95` (on its held-out data), when it logged one."""
    embeddings: Path | None = None

    @property
    def over_threshold(self) -> int | None:
        """How many examples score above the threshold: anomaly candidates."""
        return None if self.threshold is None else int((self.errors > self.threshold).sum())

    def summary(self) -> dict[str, float | int | None]:
        import numpy as np

        errors = self.errors
        return {
            "count": len(errors),
            "mean": float(errors.mean()) if len(errors) else None,
            "p95": float(np.percentile(errors, 95)) if len(errors) else None,
            "threshold": self.threshold,
            "over_threshold": self.over_threshold,
        }


def score(
    reference: str,
    spec: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
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
    import numpy as np

    from dlx.data import SourceContext, SourceError, call_source, make_splits
    from dlx.errors import SpecError, UsageError
    from dlx.track.logged_models import load_logged_model
    from dlx.track.read import open_store

    store = open_store(tracking_uri)
    (run,) = store.find([reference])
    run_id = run.info.run_id
    loaded = _logged_spec(store, run, overrides) if spec is None else load_spec(spec, overrides)
    data = loaded.spec.data
    if data is None:
        raise loaded.error((), "a spec needs a data: section to score")
    kind = run.data.params.get("model.kind")
    if kind != "autoencoder":
        raise UsageError(
            f"the run {run_id} is not an autoencoder's (model.kind: {kind or 'supervised'}); "
            "dlx score needs one"
        )

    from dlx.tensorflow_import import import_tensorflow_quietly

    import_tensorflow_quietly()
    from dlx.train.autoencoder import ERROR_METRIC, reconstruction_errors

    context = SourceContext(base_dir=loaded.base_dir, seed=loaded.spec.seed)
    batch_size = loaded.spec.train.batch_size
    try:
        if data.test_split:
            split = "test"
            inputs = make_splits(data, context=context, batch_size=batch_size).test
        else:
            split = "all"
            read = call_source(data.source, context)
            inputs = read.x if read.dataset is None else read.dataset.batch(batch_size)
    except SourceError as exc:
        raise SpecError([loaded.document.problem(exc.path, exc.message)]) from None

    errors = reconstruction_errors(
        load_logged_model(store.uri, run_id, "model"), inputs, batch_size
    )
    scores = Scores(run_id, split, errors, run.data.metrics.get(ERROR_METRIC))
    if embed is not None:
        encoder = load_logged_model(store.uri, run_id, "encoder")
        scores.embeddings = Path(embed)
        np.save(scores.embeddings, encoder.predict(inputs, batch_size=batch_size, verbose=0))
    return scores


def export(
    reference: str,
    formats: list[str] | tuple[str, ...] = ("saved_model", "onnx", "litert"),
    *,
    output: str | Path | None = None,
    tolerance: float = 1e-5,
    quantize: str | None = None,
    tracking_uri: str | None = None,
) -> Any:
    """Export a run's model to each format, check each against the Keras model in its own
    runtime, and log the files and the differences to the same run (docs/spec.md section 10).

    The predictions are compared on the run's own data: its test split (else its validation,
    else its training examples), at most 1,000 examples; a GAN's generator on latent vectors
    drawn from the spec's seed. An autoencoder's encoder is exported beside its model.

    Args:
        reference: the run's id, or a unique prefix of it.
        formats: names of `dlx.train.export.FORMATS`: `saved_model`, `onnx`, `litert`.
        output: the folder to write to; default: `./export-<run id>`.
        tolerance: the largest absolute difference allowed between an export's predictions
            and the Keras model's (not applied to quantized models).
        quantize: `float16` or `int8`: also a quantized LiteRT model (int8: calibrated on 200
            training examples), its metric recorded beside the float one.
        tracking_uri: the store; default: `$MLFLOW_TRACKING_URI`, else `./mlflow.db`.

    Returns:
        A `dlx.train.export.Export`.

    Raises:
        UsageError: an unknown format, a format that cannot carry the model's inputs, or a run
            that logged no model.
        ExportMismatch: an export differs by more than `tolerance` (exit status 1).
    """
    from dlx.errors import UsageError
    from dlx.tensorflow_import import import_tensorflow_quietly
    from dlx.track.read import open_store
    from dlx.train.export import (
        QUANTIZATIONS,
        default_output,
        export_run,
        parse_formats,
        run_logger,
        run_models,
    )

    names = parse_formats(",".join(formats))
    if quantize is not None and quantize not in QUANTIZATIONS:
        raise UsageError(
            f"--quantize: expected one of {', '.join(QUANTIZATIONS)}. Received: {quantize!r}"
        )
    store = open_store(tracking_uri)
    (run,) = store.find([reference])
    run_id = run.info.run_id
    import_tensorflow_quietly()
    models = run_models(store.uri, run_id, _logged_spec(store, run))
    folder = Path(output) if output is not None else default_output(run_id)
    return export_run(
        models,
        names,
        folder,
        tolerance=tolerance,
        quantize=quantize,
        log=run_logger(store.uri, run_id),
    )


def serve(
    reference: str,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    workers: int = 2,
    tracking_uri: str | None = None,
) -> None:
    """Serve a run's logged model over HTTP until interrupted: MLflow's scoring server
    (`GET /ping`, `POST /invocations` with JSON `inputs`, `instances` or `dataframe_split`),
    which answers a request that does not fit the model's signature with HTTP 400.

    Args:
        reference: the run's id, or a unique prefix of it.
        host: the address to listen on.
        port: the port to listen on.
        workers: server processes, each with the model, for concurrent requests.
        tracking_uri: the store; default: `$MLFLOW_TRACKING_URI`, else `./mlflow.db`.

    Raises:
        UsageError: no such run, the run logged no model, or the port is taken.
    """
    from dlx.track.read import open_store
    from dlx.train.serve import serve_run

    store = open_store(tracking_uri)
    (run,) = store.find([reference])
    serve_run(store.uri, run.info.run_id, host=host, port=port, workers=workers)


@dataclass
class RunListing:
    """An experiment's runs, newest first (`dlx runs`)."""

    experiment: str
    runs: list[RunSummary]


def runs(
    experiment: str | None = None, limit: int = 20, *, tracking_uri: str | None = None
) -> RunListing:
    """List an experiment's runs, newest first: id, name, status, start, duration, metrics.

    Args:
        experiment: the experiment's name; default: the one with the newest run.
        limit: how many runs, at most.
        tracking_uri: the store; default: `$MLFLOW_TRACKING_URI`, else `./mlflow.db`.

    Raises:
        UsageError: no store there, or no experiment of that name.
        DlxError: the store is empty or cannot be read.
    """
    from dlx.track.read import RunSummary, nested, open_store

    store = open_store(tracking_uri)
    found = store.experiment(experiment)
    listed = nested(store.runs(found, limit=limit))
    return RunListing(found.name, [RunSummary.of(run) for run in listed])


def compare(
    references: list[str] | tuple[str, ...] = (),
    *,
    experiment: str | None = None,
    filter: str = "",
    sort: str | None = None,
    metrics: list[str] | None = None,
    all_params: bool = False,
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
        diff: with exactly two runs, also their metric deltas and the diff of their logged
            specs (which reads both specs).
        plot: a PNG file to write the overlaid learning curves to.
        tracking_uri: the store; default: a spec's, else `$MLFLOW_TRACKING_URI`, else
            `./mlflow.db`.

    Returns:
        A `dlx.track.compare.Comparison`, with `deltas` and `spec_diff` for two runs.

    Raises:
        UsageError: no store there, no experiment of that name, or a run id that matches none.
        SpecError: a spec given as a reference is invalid.
        DlxError: no runs to compare.
    """
    from dlx.errors import DlxError
    from dlx.track import compare as comparing
    from dlx.track.read import Experiment, open_store
    from dlx.track.tags import PARENT_RUN, SWEEP, SWEEP_METRIC

    uri, name, ids = tracking_uri, experiment, []
    for reference in references:
        if reference.endswith((".yaml", ".yml")):
            loaded = load_spec(reference)
            tracking = loaded.spec.tracking
            uri, name = uri or tracking.uri, name or tracking.experiment or loaded.name
        else:
            ids.append(reference)
    store = open_store(uri, filter=filter)
    found = store.find(ids) if ids else store.runs(store.experiment(name), filter=filter)
    if len(found) == 1 and SWEEP in found[0].data.tags:
        parent = found[0]
        sort = sort or parent.data.tags.get(SWEEP_METRIC)
        siblings = store.runs(Experiment(str(parent.info.experiment_id), ""), filter=filter)
        found = [r for r in siblings if r.data.tags.get(PARENT_RUN) == parent.info.run_id]
    if not found:
        raise DlxError("no runs to compare")
    result = comparing.compare(store, found, metrics=metrics, all_params=all_params, sort=sort)
    if diff and len(found) == 2:
        first, second = result.runs
        result.deltas = comparing.metric_deltas(first, second)
        result.spec_diff = comparing.spec_diff(store, first, second)
    if plot is not None:
        comparing.curves_figure(store, result).savefig(plot, dpi=110)
    return result
