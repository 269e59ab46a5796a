"""The runner: places a task on a strategy, trains it, and records the run in MLflow.

Order matters and is the point of this module:

1. devices, seeds, determinism and precision are set before TensorFlow makes any op;
2. the strategy is made, then the data read (errors name the spec's lines, before training);
3. the model is built and compiled inside `strategy.scope()`;
4. the run is opened only then, so a spec that cannot start leaves no empty run, and anything
   that fails after it opened leaves it FAILED (or KILLED on Ctrl-C) with what was logged.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass, field
from typing import Any

from dlx.errors import DlxError, SpecError
from dlx.spec import LoadedSpec
from dlx.train.expectations import Expectation


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


class TrainingFailed(DlxError):
    """Training raised; the run is recorded as FAILED with its traceback (exit status 1)."""


def train(
    loaded: LoadedSpec,
    expectations: list[Expectation] | None = None,
    *,
    live: bool | None = None,
    tracking_uri: str | None = None,
    tags: dict[str, str] | None = None,
) -> TrainResult:
    """Train a spec and record the run.

    Args:
        loaded: the spec to train.
        expectations: `--expect` gates, checked against the final metrics after the run ends.
        live: a live progress bar (default: when stdout is a terminal).
        tracking_uri: the store to record in when the spec names none (instead of
            `$MLFLOW_TRACKING_URI` or `./mlflow.db`).
        tags: more tags for the run (e.g. `dlx.reproduction_of`).

    Raises:
        SpecError: the spec cannot be trained as written (no data, data that does not fit).
        TrainingFailed: training raised; the run is FAILED.
        KeyboardInterrupt: interrupted; the run is KILLED.
    """
    from dlx.tensorflow_import import import_tensorflow_quietly

    spec = loaded.spec
    if spec.data is None:
        raise loaded.error((), "a spec needs a data: section to train")
    import_tensorflow_quietly()
    import keras
    import tensorflow as tf

    from dlx.data import SourceContext, SourceError, make_splits
    from dlx.track import MlflowMetricsCallback, TrackedRun, learning_curves_figure
    from dlx.track.callback import scalar_metrics
    from dlx.track.store import quiet_mlflow
    from dlx.train.progress import progress
    from dlx.train.strategy import configure_devices, make_placement
    from dlx.train.tasks import task_for

    quiet_mlflow()
    configure_devices(loaded)
    if spec.runtime.deterministic:
        tf.config.experimental.enable_op_determinism()
    # Layer names start afresh; clearing resets the precision policy and seeds, so it goes first.
    keras.utils.clear_session()
    keras.utils.set_random_seed(spec.seed)
    policy = keras.mixed_precision.global_policy()
    if spec.runtime.mixed_precision:
        keras.mixed_precision.set_global_policy(spec.runtime.mixed_precision)
    try:
        placement = make_placement(loaded)
        try:
            splits = make_splits(
                spec.data,
                context=SourceContext(base_dir=loaded.base_dir, seed=spec.seed),
                batch_size=spec.train.batch_size,
            )
        except SourceError as exc:
            raise SpecError([loaded.document.problem(exc.path, exc.message)]) from None
        task = task_for(loaded)
        with placement.strategy.scope():
            model = task.build(spec.runtime.jit_compile)
            task.prepare(model, splits)
        fit_arguments = task.fit_arguments(splits)

        started = time.perf_counter()
        run = TrackedRun.for_spec(
            loaded,
            strategy=placement.name,
            replicas=placement.replicas,
            data_fingerprint=splits.fingerprint,
        )
        run.tags.update(tags or {})
        if tracking_uri and not spec.tracking.uri:
            run.tracking_uri = tracking_uri
        with run:
            run.log_text(_summary(model), "model_summary.txt")
            metrics_callback = MlflowMetricsCallback(run)
            try:
                fit_started = time.perf_counter()
                train, validation, test = task.datasets(splits)
                steps = -(-splits.num_train // spec.train.batch_size)
                for stage in task.stages(model):
                    first = len(metrics_callback.history)
                    if stage.prepare is not None:
                        with placement.strategy.scope():
                            stage.prepare()
                    model.fit(
                        train,
                        validation_data=validation,
                        initial_epoch=first,
                        epochs=first + stage.epochs,
                        callbacks=[
                            *task.callbacks,
                            *task.run_callbacks(run),
                            metrics_callback,
                            progress(stage.epochs, steps, stage.label, first, live=live),
                        ],
                        verbose=0,
                        shuffle=False,  # the training dataset is already shuffled, seeded
                        **fit_arguments,
                    )
                fit_seconds = time.perf_counter() - fit_started
                epochs_trained = len(metrics_callback.history)
                final = dict(metrics_callback.history[-1]) if metrics_callback.history else {}
                final.pop("epoch", None)
                if test is not None:
                    scores = task.evaluate(model, test)
                    test_metrics = {f"test_{k}": v for k, v in scalar_metrics(scores).items()}
                    run.log_metrics(test_metrics, step=epochs_trained)
                    final.update(test_metrics)
                run.log_text(metrics_callback.history_csv(), "history.csv")
                run.log_figure(
                    learning_curves_figure(metrics_callback.columns()), "learning_curves.png"
                )
                task.log_artifacts(run, model, splits)
                saved = task.saved_model(model)
                sample = task.sample_inputs(splits)
                if spec.tracking.log_model and sample is not None:
                    run.log_keras_model(saved, sample)
            except (KeyboardInterrupt, SpecError):
                raise
            except Exception as exc:
                raise TrainingFailed(
                    f"training failed: {type(exc).__name__}: {exc}\n"
                    f"The run {run.run_id} is recorded as FAILED with its traceback "
                    f"(traceback.txt).\n{run.ui_hint()}"
                ) from exc
        failures = [f for e in expectations or [] if (f := e.failure(final))]
        return TrainResult(
            run_id=run.run_id or "",
            experiment=run.experiment,
            tracking_uri=run.tracking_uri,
            metrics=final,
            strategy=placement.name,
            replicas=placement.replicas,
            seconds=time.perf_counter() - started,
            fit_seconds=fit_seconds,
            samples_per_second=splits.num_train * epochs_trained / max(fit_seconds, 1e-9),
            ui_hint=run.ui_hint(),
            failures=failures,
        )
    finally:
        keras.mixed_precision.set_global_policy(policy)


def _summary(model: Any) -> str:
    lines = io.StringIO()
    model.summary(print_fn=lambda line, *_, **__: lines.write(line + "\n"))
    return lines.getvalue()
