"""The runner: places a task on a strategy, trains it, and records the run in MLflow.

Order matters and is the point of this module:

0. the chief checks that the store can take the run (`check_store`, which writes nothing),
   before TensorFlow is even imported;
1. devices and determinism are set, and the strategy made, before TensorFlow starts its
   runtime (a multi-worker strategy configures it); then seeds and precision;
2. the data is read (errors name the spec's lines, before training);
3. the model is built and compiled inside `strategy.scope()`;
4. the run is opened only then, so a spec that cannot start leaves no empty run, and anything
   that fails after it opened leaves it FAILED (or KILLED on Ctrl-C) with what was logged.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dlx.errors import DlxError, Interrupted, SpecError, no_space_left, no_space_message
from dlx.spec import LoadedSpec
from dlx.track.tags import (
    CHECKPOINTS,
    DATA_CACHE,
    DATA_FINGERPRINT_KIND,
    FILES_PER_WORKER,
    INTRA_OP_THREADS,
    PROCESS,
    RESUMED,
    SHARD_POLICY,
    SKIPPED_EXAMPLES,
    WORKERS,
)
from dlx.train.expectations import Expectation
from dlx.train.resume import Resume, this_process

if TYPE_CHECKING:
    from dlx.train.progress import ProgressListener

STEPS_PER_EXECUTION = "train.steps_per_execution"
"""The param holding the steps per execution chosen (the number, also when the spec says auto)."""
INTRA_OP_THREADS_VARIABLE = "TF_NUM_INTRAOP_THREADS"
"""The environment variable that limits TensorFlow's threads per operation."""
JIT_COMPILE = "runtime.jit_compile"
"""The param holding whether XLA compiled the training step (true or false, also for auto)."""


@dataclass
class TrainResult:
    """What a finished run reports."""

    run_id: str
    experiment: str
    tracking_uri: str
    metrics: dict[str, float]
    strategy: str
    replicas: int
    seconds: float
    """From the run's start to its end: training, evaluation and logging."""
    fit_seconds: float
    """`Model.fit` alone."""
    samples_per_second: float
    """Training throughput: examples seen by `fit` per second."""
    ui_hint: str
    failures: list[str] = field(default_factory=list)
    """`--expect` gates that were not met."""
    workers: int = 1
    """The workers of the job (`TF_CONFIG`'s cluster)."""
    worker: int = 0
    """This process's place among them; 0 is the chief, which records the run."""
    model: Any = None
    """The trained Keras model (after a multi-worker job, the chief's copy of it)."""
    data_cache: str | None = None
    """Where a streamed source's examples were kept (`data.cache` as chosen); `None` when the
    data is in memory anyway."""
    sharding: str | None = None
    """How the workers of a job shared the training split (`Sharding.describe`); `None` for
    one worker."""
    data_fingerprint: str = ""
    """The fingerprint of the data read (`Splits.fingerprint`)."""
    skipped: list[str] = field(default_factory=list)
    """The files left out because they could not be decoded (`data.on_error: skip`)."""
    steps_per_execution: str = ""
    """The training steps run per call into TensorFlow, and why (`25 (auto: ...)`)."""
    jit_compile: str = ""
    """Whether XLA compiled the training step, and why (`on (auto: ...)`)."""
    backend: str = "tensorflow"
    """The Keras backend that trained it (`runtime.backend`)."""


class TrainingFailed(DlxError):
    """Training raised; the run is recorded as FAILED with its traceback (exit status 1)."""

    folder: Path | None = None
    """The run's checkpoint folder, kept for `dlx train --resume`."""


def train(
    loaded: LoadedSpec,
    expectations: list[Expectation] | None = None,
    *,
    progress: ProgressListener | None = None,
    tracking_uri: str | None = None,
    tags: dict[str, str] | None = None,
    resume: Resume | None = None,
    callbacks: list[Any] | None = None,
) -> TrainResult:
    """Train a spec and record the run.

    In a multi-worker job (`TF_CONFIG`), every worker calls this; only the chief records the
    run, and the others return a result without one (`run_id` empty).

    Args:
        loaded: the spec to train.
        expectations: `--expect` gates, checked against the final metrics after the run ends.
        progress: who follows the training's epochs (the CLI shows them); none by default.
        tracking_uri: the store to record in when the spec names none (instead of
            `$MLFLOW_TRACKING_URI` or `./mlflow.db`).
        tags: more tags for the run (e.g. `dlx.reproduction_of`).
        resume: continue this run from its checkpoints instead of starting a new one.
        callbacks: more Keras callbacks for `fit`, after the one that records each epoch
            (a sweep's pruning callback sees the epoch's metrics already recorded).

    Raises:
        SpecError: the spec cannot be trained as written (no data, data that does not fit).
        TrainingFailed: training raised; the run is FAILED.
        Interrupted: interrupted (Ctrl-C, or `Terminated` by SIGTERM); the run is KILLED, and
            the message says how to continue it. A `KeyboardInterrupt`.
    """
    from dlx.track.store import check_store, resolve_tracking_uri
    from dlx.train.multi_worker import Cluster
    from dlx.train.preparation import backend_of, has_data

    spec = loaded.spec
    has_data(loaded, "to train")
    if Cluster.from_environment().is_chief:
        store = resolve_tracking_uri(spec.tracking.uri or tracking_uri)
        check_store(resume.tracking_uri if resume else store)
    began = _began(loaded)  # before Keras is set to the spec's backend (`KERAS_BACKEND`)
    backend = backend_of(loaded)
    if progress is not None:
        progress.run_began(began)
    from dlx.track.store import quiet_mlflow
    from dlx.train.execution import choose_steps_per_execution
    from dlx.train.preparation import prepare

    quiet_mlflow()
    backend.configure_devices(loaded)
    with backend.process_settings(loaded):
        # Before anything starts TensorFlow's runtime: a multi-worker strategy must configure it.
        placement = backend.make_placement(loaded)
        prepared = prepare(loaded, "to train", placement)
        task, model, splits = prepared.task, prepared.model, prepared.splits
        backend.after_build(model)
        execution = choose_steps_per_execution(
            spec.train.steps_per_execution,
            model,
            spec.train.batch_size,
            splits.steps_per_epoch,
            task.callbacks,
            placement.cluster.workers,
            placement.strategy.num_replicas_in_sync,
            xla=prepared.jit.enabled,
        )
        fitting = _Fitting(
            task, model, splits, placement, progress, execution, prepared.jit, callbacks or []
        )
        if not placement.cluster.is_chief:
            return fitting.as_worker(resume)
        return _train_and_record(
            fitting, expectations or [], tracking_uri=tracking_uri, tags=tags or {}, resume=resume
        )


@dataclass
class _Fitting:
    """A built task and its data, on its strategy: what every worker of a job does alike."""

    task: Any
    model: Any
    splits: Any
    placement: Any
    progress: ProgressListener | None
    execution: Any
    """The steps per execution chosen (`dlx.train.execution.StepsPerExecution`)."""
    jit: Any
    """Whether XLA compiles the training step (`dlx.train.execution.JitCompile`)."""
    extra_callbacks: list[Any] = field(default_factory=list)
    """The caller's callbacks (`train(callbacks=...)`), after the recorder."""

    def stages(self, checkpoints: Any, recorder: Any = None) -> int:
        """Fit every stage, resuming each from its checkpoint; the number of epochs reached.

        With a `recorder` (the chief's `MlflowMetricsCallback`), each stage's checkpoint is
        saved by it, between journaling and sending the epoch's metrics; without, directly.
        A stage that ended before a resume is fitted for no epoch: `BackupAndRestore` only
        restores its weights, and the next stage goes on from there.
        """
        from dlx.train.divergence import StopOnNonFiniteLoss
        from dlx.train.interrupts import StopWhenAsked
        from dlx.train.progress import progress_callback

        guards: list[Any] = [StopWhenAsked()]
        if self.task.loaded.spec.train.on_nan != "continue":
            guards.append(StopOnNonFiniteLoss())
        fit_arguments = self.task.fit_arguments(self.splits)
        first = 0
        for index, stage in enumerate(self.task.stages(self.model)):
            if stage.prepare is not None:
                with self.placement.strategy.scope():
                    stage.prepare()
            restored, done = checkpoints.restored_epoch(index), checkpoints.done_epoch(index)
            start = first if restored is None else restored
            end = first + stage.epochs if done is None else done
            checkpoint = checkpoints.callback(index, self.task.callbacks)
            callbacks = [*self.task.callbacks]
            if recorder is not None:
                recorder.history = [row for row in recorder.history if row["epoch"] < start]
                recorder.checkpoint = checkpoint
                callbacks += [*self.task.run_callbacks(recorder.outbox), recorder]
            else:
                callbacks.append(checkpoint)
            train, validation, _ = self.task.datasets(self.splits, start, end)
            steps = self.splits.steps_per_epoch
            shown = (
                [progress_callback(self.progress, stage.epochs, steps, stage.label, first)]
                if self.progress is not None
                else []
            )
            # After the stage's `prepare`, which may recompile (and so reset them).
            self.model.steps_per_execution = self.execution.steps
            self.model.jit_compile = self.jit.enabled
            fitted = self.model.fit(
                train,
                validation_data=validation,
                steps_per_epoch=self.splits.steps_per_epoch,
                initial_epoch=first,
                epochs=end,
                callbacks=[
                    *callbacks,
                    *self.extra_callbacks,
                    *shown,
                    *guards,  # last: the epoch that diverged is recorded and shown first
                ],
                verbose=0,
                shuffle=False,  # each epoch's order is drawn by `splits.epochs`
                **fit_arguments,
            )
            first = fitted.epoch[-1] + 1 if fitted.epoch else max(start, first)
            checkpoints.mark_done(index, first)
        return first

    def as_worker(self, resume: Resume | None) -> TrainResult:
        """A worker other than the chief: train in step with the others, record nothing."""
        from dlx.train.checkpoints import RunCheckpoints

        checkpoints = RunCheckpoints(resume.checkpoints if resume else None, writer=False)
        started = time.perf_counter()
        try:
            epochs = self.stages(checkpoints)
        finally:
            checkpoints.close()
        seconds = time.perf_counter() - started
        return TrainResult(
            run_id="",
            experiment="",
            tracking_uri="",
            metrics={},
            strategy=self.placement.name,
            replicas=self.placement.replicas,
            seconds=seconds,
            fit_seconds=seconds,
            samples_per_second=self.splits.num_train * epochs / max(seconds, 1e-9),
            ui_hint="",
            workers=self.placement.cluster.workers,
            worker=self.placement.cluster.index,
            model=self.model,
            sharding=self.splits.sharding and self.splits.sharding.describe(),
        )


def _train_and_record(
    fitting: _Fitting,
    expectations: list[Expectation],
    *,
    tracking_uri: str | None,
    tags: dict[str, str],
    resume: Resume | None,
) -> TrainResult:
    """The chief (or the only worker): open the run (or reopen it), train, record."""
    from dlx.track import TrackedRun

    loaded, placement = fitting.task.loaded, fitting.placement
    spec, splits, cluster = loaded.spec, fitting.splits, placement.cluster
    started = time.perf_counter()
    run = TrackedRun.for_spec(
        loaded,
        strategy=placement.name,
        replicas=placement.replicas,
        data_fingerprint=splits.fingerprint,
    )
    run.tags.update(tags)
    run.tags.update({WORKERS: str(cluster.workers), PROCESS: this_process()})
    if threads := os.environ.get(INTRA_OP_THREADS_VARIABLE):
        run.tags[INTRA_OP_THREADS] = threads
    run.params[STEPS_PER_EXECUTION] = str(fitting.execution.steps)
    run.params[JIT_COMPILE] = str(fitting.jit.enabled).lower()
    if splits.cache is not None:
        run.tags[DATA_CACHE] = splits.cache
        if spec.data.cache == "auto":  # the param says what `auto` chose
            run.params["data.cache"] = splits.cache
        run.tags[DATA_FINGERPRINT_KIND] = spec.data.fingerprint
    if splits.sharding is not None:
        run.tags[SHARD_POLICY] = splits.sharding.policy
        if splits.sharding.files_per_worker is not None:
            run.tags[FILES_PER_WORKER] = splits.sharding.files_per_worker
    if resume is not None:
        run.tags[RESUMED] = str(resume.count)
        run.tracking_uri = resume.tracking_uri
        run.reopen(resume.run_id)
    elif tracking_uri and not spec.tracking.uri:
        run.tracking_uri = tracking_uri
    try:
        return _record(fitting, run, expectations, resume, started)
    except KeyboardInterrupt as exc:
        if run.run_id is None:  # stopped before the run was created: nothing to say of it
            raise
        stopped = exc if isinstance(exc, Interrupted) else Interrupted()
        what = (
            f"run {run.run_id} recorded KILLED"
            if run.end_recorded
            else f"run {run.run_id} could not be marked KILLED (the store at {run.tracking_uri} "
            "did not answer) and shows as RUNNING"
        )
        raise type(stopped)(
            f"{stopped.cause}: {what}; continue it with `dlx train --resume {run.run_id}`"
        ) from None
    except TrainingFailed as failed:
        if run.end_recorded:
            raise
        raise TrainingFailed(
            f"{str(failed).splitlines()[0]}\nThe run {run.run_id} could not be marked "
            f"FAILED (the store at {run.tracking_uri} did not answer) and shows as RUNNING; its "
            f"checkpoints and unsent metrics are kept in {failed.folder}: when the store is back, "
            f"`dlx train --resume {run.run_id}` sends them and finishes the run."
        ) from failed.__cause__


def _record(
    fitting: _Fitting,
    run: Any,
    expectations: list[Expectation],
    resume: Resume | None,
    started: float,
) -> TrainResult:
    """Train in the open run and record everything: metrics, tests, artifacts, the model."""
    from dlx.track import MlflowMetricsCallback, learning_curves_figure
    from dlx.track.callback import scalar_metrics
    from dlx.track.outbox import Outbox
    from dlx.train.checkpoints import RunCheckpoints, checkpoint_folder
    from dlx.train.divergence import Diverged
    from dlx.train.preparation import backend_module

    task, model, splits, placement = fitting.task, fitting.model, fitting.splits, fitting.placement
    spec = task.loaded.spec
    cluster = placement.cluster
    with run, _lengths_left_unknown(spec.data.on_error):
        folder = resume.checkpoints if resume else checkpoint_folder(run.tracking_uri, run.run_id)
        checkpoints = RunCheckpoints(folder)
        outbox = Outbox(run, checkpoints.folder)
        try:
            recorder = MlflowMetricsCallback(run, outbox)
            if resume is not None:
                kept = outbox.kept()
                recorder.history = [{"epoch": step, **kept[step][0]} for step in sorted(kept)]
            else:
                run.set_tags({CHECKPOINTS: str(folder)})
                run.log_text(_summary(model), "model_summary.txt")
            fit_started = time.perf_counter()
            epochs_trained = fitting.stages(checkpoints, recorder)
            fit_seconds = time.perf_counter() - fit_started
            # Epochs journaled before a kill but never sent, then whatever an outage held back.
            outbox.requeue([int(row["epoch"]) for row in recorder.history])
            outbox.send(wait=True)
            final = dict(recorder.history[-1]) if recorder.history else {}
            final.pop("epoch", None)
            # Several workers: what follows runs on the chief alone, so on a copy of the
            # model outside the strategy (the collectives need every worker).
            if cluster.workers > 1:
                backend_module(spec.runtime.backend).alone()
                splits = splits.alone()
            local = task.detached(model, splits) if cluster.workers > 1 else model
            _, _, test = task.datasets(splits)
            if test is not None:
                scores = task.evaluate(local, test)
                test_metrics = {f"test_{k}": v for k, v in scalar_metrics(scores).items()}
                # A resumed run whose attempt before logged them (then failed after): once.
                logged = run.logged_metric_keys() if resume is not None else set()
                run.log_metrics(
                    {k: v for k, v in test_metrics.items() if k not in logged}, step=epochs_trained
                )
                final.update(test_metrics)
            run.log_text(recorder.history_csv(), "history.csv")
            run.log_figure(learning_curves_figure(recorder.columns()), "learning_curves.png")
            skipped = splits.skipped()
            if skipped:  # before the artifacts: what reads the splits again may skip more
                run.set_tags({SKIPPED_EXAMPLES: f"{len(skipped)} (first: {skipped[0]})"})
            task.log_artifacts(run, local, splits)
            saved = task.saved_model(local)
            sample = task.sample_inputs(splits)
            if spec.tracking.log_model and sample is not None:
                if resume is not None:
                    run.fail_unfinished_models()
                run.log_keras_model(saved, sample)
        except (KeyboardInterrupt, SpecError):
            raise
        except Diverged as exc:
            # Its weights are NaN: nothing to resume from once its metrics are all in the store.
            unsent = not outbox.send()
            if not unsent:
                checkpoints.remove()
            failed = TrainingFailed(
                f"{exc}\nThe run {run.run_id} is recorded as FAILED with the metrics of its "
                "epochs up to that one"
                + (f"; the ones not sent yet are kept in {folder}" if unsent else "")
                + f".\n{run.ui_hint()}"
            )
            failed.folder = folder
            raise failed from exc
        except Exception as exc:
            where = no_space_left(exc)
            if where is not None:  # the checkpoints are whole: a resume goes on from the last
                then = f"`dlx train --resume {run.run_id}` continues the run from its last epoch"
                reason = no_space_message(where, then)
            else:
                reason = f"training failed: {_reason(exc, cluster.workers, splits)}"
            failed = TrainingFailed(
                f"{reason}\n"
                f"The run {run.run_id} is recorded as FAILED with its traceback "
                f"(traceback.txt); its checkpoints and metrics are kept in {folder}: "
                f"continue it with `dlx train --resume {run.run_id}`.\n{run.ui_hint()}"
            )
            failed.folder = folder
            raise failed from exc
    checkpoints.remove()
    failures = [f for e in expectations if (f := e.failure(final))]
    return TrainResult(
        run_id=run.run_id or "",
        experiment=run.experiment,
        tracking_uri=run.tracking_uri,
        metrics=final,
        strategy=placement.name,
        replicas=placement.replicas,
        backend=spec.runtime.backend,
        seconds=time.perf_counter() - started,
        fit_seconds=fit_seconds,
        samples_per_second=splits.num_train * epochs_trained / max(fit_seconds, 1e-9),
        ui_hint=run.ui_hint(),
        failures=failures,
        workers=cluster.workers,
        model=local,
        data_cache=splits.cache,
        sharding=splits.sharding and splits.sharding.describe(),
        data_fingerprint=splits.fingerprint,
        skipped=skipped,
        steps_per_execution=fitting.execution.describe(),
        jit_compile=fitting.jit.describe(),
    )


@contextlib.contextmanager
def _lengths_left_unknown(on_error: str) -> Iterator[None]:
    """With `data.on_error: skip`, no "Your input ran out of data" warning from Keras.

    A split that skips files has no length known in advance (`dlx.data.pipeline`): Keras reads
    it to its end and warns, on the first epoch, as if a length given had been too long.
    """
    import warnings

    with warnings.catch_warnings():
        if on_error == "skip":
            warnings.filterwarnings("ignore", message="Your input ran out of data")
        yield


def _began(loaded: LoadedSpec) -> list[str]:
    """What `dlx train` says before training: the backend, and a `KERAS_BACKEND` that the
    spec overrides."""
    from dlx.backend import environment_note

    backend = loaded.spec.runtime.backend
    note = environment_note(backend)
    return [f"backend: {backend}", *([f"note: {note}"] if note else [])]


def _reason(exc: Exception, workers: int, splits: Any) -> str:
    """Why training failed, in a line; a job's lost worker and a file that cannot be decoded
    said plainly."""
    unreadable = splits.unreadable(exc)
    if unreadable is not None:
        return unreadable
    lost: tuple[type[BaseException], ...] = ()
    if workers > 1 and "tensorflow" in sys.modules:
        import tensorflow as tf

        lost = (tf.errors.UnavailableError, tf.errors.AbortedError, tf.errors.CancelledError)
    if lost and isinstance(exc, lost):
        return (
            f"a worker of the job stopped answering (TensorFlow: {type(exc).__name__}; "
            "see the other workers' output)"
        )
    return f"{type(exc).__name__}: {exc}"


def _summary(model: Any) -> str:
    lines = io.StringIO()
    model.summary(print_fn=lambda line, *_, **__: lines.write(line + "\n"))
    return lines.getvalue()
