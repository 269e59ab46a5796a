"""What each model kind needs to train: its model, its data and its own artifacts.

The runner (`dlx.train.runner`) owns the strategy, the loop and the tracking; a task owns what
differs between kinds (Model Garden's `Task` / `OrbitExperimentRunner` split). A new kind adds a
task here and touches nothing in the runner.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from dlx.build.compile import CompileArgs, build_compile_args
from dlx.build.model import BuiltModel, build_model
from dlx.data import Splits
from dlx.errors import SpecError
from dlx.spec import LoadedSpec


@dataclass
class Stage:
    """One `fit` of a run: its epochs, and what to change before it (e.g. unfreeze layers).

    Stages continue one another's epoch numbers, so a run's curves and logged metrics go on
    from stage to stage in the same MLflow run.
    """

    epochs: int
    label: str = ""
    prepare: Callable[[], None] | None = None
    """Called inside the strategy's scope before the stage's `fit` (recompiling is safe)."""


class Task(abc.ABC):
    """What a model kind needs; the defaults fit a model on `(x, y)` and evaluate it.

    Subclasses build and compile their model in `build`, and override the other hooks where
    the kind differs.
    """

    def __init__(self, loaded: LoadedSpec) -> None:
        self.loaded = loaded
        self.built: BuiltModel | None = None
        self.callbacks: list[Any] = []
        """The spec's own callbacks (`train.callbacks`), set by `build`."""

    @abc.abstractmethod
    def build(self, jit_compile: Any) -> Any:
        """Build and compile the model that `fit` trains; called inside the strategy's scope."""

    def build_with_compile_args(self) -> tuple[Any, CompileArgs]:
        """The spec's model (kept as `built`) and its compile arguments, for `build` to
        compile with; the spec's callbacks are kept as `callbacks`."""
        self.built = build_model(self.loaded)
        model = self.built.model
        args = build_compile_args(self.loaded, list(model.output_names))
        self.callbacks = args.callbacks
        return model, args

    def prepare(self, model: Any, splits: Splits) -> None:
        """Check the data fits the model, and adapt preprocessing layers on the training split."""
        _check_shapes(self.loaded, model, splits)
        _adapt(self.loaded, model, splits)

    def detached(self, model: Any, splits: Splits) -> Any:
        """The trained model built again outside any strategy, with its weights.

        After a multi-worker job, the chief alone evaluates, predicts and saves; on the
        strategy's model these would start collectives that the other workers never join.
        The task's own models (`built`) become the copy's.
        """
        weights = model.get_weights()
        local = self.build(self.loaded.spec.runtime.jit_compile)
        self.prepare(local, splits)
        local.set_weights(weights)
        return local

    def datasets(self, splits: Splits, first: int = 0, end: int = 1) -> tuple[Any, Any, Any]:
        """The datasets `fit` and `evaluate` read: training, validation and test.

        Training batches are those of epochs `first` to `end - 1` (`Splits.epochs`): `fit`
        reads `splits.steps_per_epoch` of them an epoch.
        """
        return splits.epochs(first, end), splits.validation, splits.test

    def stages(self, model: Any) -> list[Stage]:
        return [Stage(self.loaded.spec.train.epochs)]

    def fit_arguments(self, splits: Splits) -> dict[str, Any]:
        return {}

    def run_callbacks(self, outbox: Any) -> list[Any]:
        """Callbacks that log to the run while it trains (e.g. samples every few epochs),
        through its `dlx.track.outbox.Outbox` (which keeps them through an outage)."""
        return []

    def evaluate(self, model: Any, test: Any) -> dict[str, Any]:
        return model.evaluate(test, verbose=0, return_dict=True)

    def log_artifacts(self, run: Any, model: Any, splits: Splits) -> None:  # noqa: B027
        """The kind's own artifacts, after training (an optional hook: none by default)."""

    def saved_model(self, model: Any) -> Any:
        """The model logged as the run's model."""
        return model

    def sample_inputs(self, splits: Splits) -> Any:
        """Inputs for the logged model's signature; None when there are none to show."""
        return None if splits.train_arrays is None else splits.train_arrays[0]


class SupervisedTask(Task):
    """Inputs `x`, targets `y`: the default kind; with a backbone, an optional fine-tune stage."""

    def build(self, jit_compile: Any) -> Any:
        model, args = self.build_with_compile_args()
        self._compile = dict(loss=args.loss, metrics=args.metrics, jit_compile=jit_compile)
        model.compile(optimizer=args.optimizer, **self._compile)
        return model

    def stages(self, model: Any) -> list[Stage]:
        stages = [Stage(self.loaded.spec.train.epochs)]
        fine_tune = self.loaded.spec.train.fine_tune
        if fine_tune is not None:
            stages.append(Stage(fine_tune.epochs, "fine-tune", lambda: self._unfreeze(model)))
        return stages

    def _unfreeze(self, model: Any) -> None:
        """Unfreeze the backbone's top layers, batch norm kept in inference mode; recompile."""
        import keras

        fine_tune = self.loaded.spec.train.fine_tune
        backbone = self.built.backbone if self.built else None
        if backbone is None:
            raise self.loaded.error(
                ("train", "fine_tune"), "fine_tune needs a model.backbone to unfreeze"
            )
        backbone.trainable = True
        layers = backbone.layers
        count = len(layers) if fine_tune.unfreeze == "all" else fine_tune.unfreeze
        for i, layer in enumerate(layers):
            frozen = i < len(layers) - count
            # Batch norm keeps its statistics: unfrozen, it would relearn them on little data.
            layer.trainable = not frozen and not isinstance(layer, keras.layers.BatchNormalization)
        optimizer = keras.optimizers.get(
            {
                "class_name": type(model.optimizer).__name__,
                "config": {
                    **model.optimizer.get_config(),
                    "learning_rate": fine_tune.learning_rate,
                },
            }
        )
        model.compile(optimizer=optimizer, **self._compile)

    def fit_arguments(self, splits: Splits) -> dict[str, Any]:
        weight = self.loaded.spec.train.class_weight
        if weight is None:
            return {}
        if isinstance(weight, dict):
            return {"class_weight": {int(k): float(v) for k, v in weight.items()}}
        if splits.train_arrays is None:
            raise self.loaded.error(
                ("train", "class_weight"), "balanced class weights need a source that gives arrays"
            )
        y = np.asarray(splits.train_arrays[1]).reshape(-1).astype(int)
        classes, counts = np.unique(y, return_counts=True)
        balanced = len(y) / (len(classes) * counts)
        return {"class_weight": {int(c): float(w) for c, w in zip(classes, balanced, strict=True)}}

    def log_artifacts(self, run: Any, model: Any, splits: Splits) -> None:
        """A confusion matrix for classifiers, on the test split (else validation)."""
        arrays = splits.test_arrays or splits.validation_arrays
        if arrays is None or arrays[1] is None or len(model.outputs) != 1:
            return
        x, y = arrays
        y = np.asarray(y)
        if not np.issubdtype(y.dtype, np.integer):
            return
        scores = model.predict(x, verbose=0, batch_size=self.loaded.spec.train.batch_size)
        if scores.ndim != 2:
            return
        from dlx.track import confusion_matrix_figure

        figure = confusion_matrix_figure(y.reshape(-1), scores, splits.class_names)
        run.log_figure(figure, "confusion_matrix.png")


def _check_shapes(loaded: LoadedSpec, model: Any, splits: Splits) -> None:
    spec_x = splits.train.element_spec[0]
    inputs = model.inputs
    data_specs = (
        list(spec_x.values())
        if isinstance(spec_x, dict)
        else (list(spec_x) if isinstance(spec_x, (tuple, list)) else [spec_x])
    )
    if len(data_specs) != len(inputs):
        raise loaded.error(
            ("data", "source"),
            f"the data has {len(data_specs)} inputs but the model has {len(inputs)}",
        )
    for data_spec, model_input in zip(data_specs, inputs, strict=True):
        got = tuple(data_spec.shape[1:])
        want = tuple(model_input.shape[1:])
        fits = len(got) == len(want) and all(
            w is None or g is None or g == w for g, w in zip(got, want, strict=True)
        )
        if not fits:
            raise loaded.error(
                ("data", "source"),
                f"the data's examples have shape {list(got)} but the model's input "
                f"'{model_input.name}' expects {list(want)}",
            )


def _adapt(loaded: LoadedSpec, model: Any, splits: Splits) -> None:
    """Adapt layers with `adapt` that read a model input directly, on the training split."""
    adaptable = [
        layer
        for layer in model.layers
        if hasattr(layer, "adapt") and any(layer.input is i for i in model.inputs)
    ]
    if not adaptable:
        return
    if splits.train_arrays is None:
        raise SpecError(
            [loaded.document.problem(("data", "source"), "adapting a layer needs array data")]
        )
    x = splits.train_arrays[0]
    for layer in adaptable:
        index = next(i for i, t in enumerate(model.inputs) if layer.input is t)
        data = list(x.values())[index] if isinstance(x, dict) else x
        layer.adapt(data)


def task_for(loaded: LoadedSpec) -> Task:
    """The task of a spec's model kind."""
    kind = loaded.spec.model.kind
    if kind == "autoencoder":
        from dlx.train.autoencoder import AutoencoderTask

        return AutoencoderTask(loaded)
    if kind == "gan":
        from dlx.train.gan import GanTask

        return GanTask(loaded)
    return SupervisedTask(loaded)
