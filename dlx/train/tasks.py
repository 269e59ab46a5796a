"""What each model kind needs to train: its model, its data and its own artifacts.

The runner (`dlx.train.runner`) owns the strategy, the loop and the tracking; a task owns what
differs between kinds (Model Garden's `Task` / `OrbitExperimentRunner` split). A new kind is a
`Task` subclass registered for its `model.kind` with `@register_task("kind")`, in a module of
its own that `dlx.train.kinds` imports; it touches nothing in the runner.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from dlx.build.compile import CompileArgs, build_callbacks, build_compile_args, logged_names
from dlx.build.model import BuiltModel, build_model
from dlx.data import Splits
from dlx.errors import DlxError, SpecError, UsageError
from dlx.spec import LoadedSpec, PathKey, split_component
from dlx.track.logged_models import load_run_model

ADAPT_SAMPLE = 10000
"""How many examples of a streamed source preprocessing layers are adapted on (the first ones
of the first epoch, whose order is seeded): streamed data is never read whole to adapt."""
SIGNATURE_SAMPLE = 2
"""How many examples of a streamed source show the logged model's signature."""


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

    logged_models: tuple[str, ...] = ("model",)
    """The Keras models a run of this kind logs, by name; `model` is the run's model. `dlx
    export` exports each of them."""
    embedding_model: str | None = None
    """The logged model whose outputs are embeddings of the inputs (`dlx score --embed`)."""
    score_metric: str | None = None
    """The run metric that is the threshold of `score`'s values (an anomaly threshold); `None`
    for a kind that does not score examples."""

    def __init__(self, loaded: LoadedSpec) -> None:
        self.loaded = loaded
        self.built: BuiltModel | None = None
        self.callbacks: list[Any] = []
        """The spec's own callbacks (`train.callbacks`), set by `build`."""

    @abc.abstractmethod
    def build(self, jit_compile: Any) -> Any:
        """Build and compile the model that `fit` trains; called inside the strategy's scope."""

    def unsupported_on(self, backend: str) -> tuple[tuple[str, ...], str] | None:
        """Why the kind cannot train on a Keras backend (`runtime.backend`), at which spec
        key; `None` when it can."""
        return None

    def build_models(self) -> BuiltModel:
        """The kind's networks, built from the spec without reading data (what `dlx validate`
        and `dlx inspect` build too); by default a supervised model."""
        return build_model(self.loaded, load_run_model)

    def build_with_compile_args(self) -> tuple[Any, CompileArgs]:
        """The spec's model (kept as `built`) and its compile arguments, for `build` to
        compile with; the spec's callbacks are kept as `callbacks`."""
        self.built = self.build_models()
        model = self.built.model
        args = build_compile_args(self.loaded, list(model.output_names))
        self.callbacks = args.callbacks
        return model, args

    def final_metrics(self, output_names: list[str]) -> set[str] | None:
        """The names of the metrics a run of this kind ends with (`TrainResult.metrics`, which a
        sweep's `metric` is one of), known before training from the spec alone; `None` when
        they cannot be (a callback of a plugin's may log its own).

        By default: what Keras logs for the spec's loss and metrics (`logged_names`, on a model
        with these outputs), each also `val_` with validation data and `test_` with test data,
        and what the spec's callbacks log (`callback_metrics`).

        Raises:
            SpecError: the spec's metrics or callbacks do not resolve.
        """
        logged = logged_names(self.loaded, output_names)
        data = self.loaded.spec.data
        names = set(logged)
        if data is not None and (data.validation_split or data.validation is not None):
            names |= {f"val_{name}" for name in logged}
        if data is not None and (data.test_split or data.test is not None):
            names |= {f"test_{name}" for name in logged}
        return callback_metrics(names, build_callbacks(self.loaded))

    def prepare(self, model: Any, splits: Splits) -> None:
        """Check the data fits the model, and adapt preprocessing layers on the training split.

        Called before the run opens: data that does not fit is a `SpecError` at `data.source`,
        not a failed run.
        """
        _check_inputs(self.loaded, model, splits)
        self.check_targets(model, splits)
        _adapt(self.loaded, model, splits)

    def check_targets(self, model: Any, splits: Splits) -> None:  # noqa: B027
        """Check the data's targets fit the model's outputs and loss (an optional hook: kinds
        that train on their inputs alone have no targets to check)."""

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

    def reference_inputs(self, count: int) -> Any:
        """Inputs of the kind's own to check an exported model on (a GAN's latent vectors);
        `None`: the run's data (its test split, else validation, else training)."""
        return None

    def reference_targets(self, x: Any, y: Any) -> Any:
        """The targets an exported model's predictions of `x` are measured against."""
        return y

    def score(self, model: Any, inputs: Any, batch_size: int) -> np.ndarray:
        """One value per example of `inputs` (`dlx score`), by the run's trained `model`.

        Raises:
            UsageError: the kind does not score examples (`score_metric` is `None`).
        """
        kind = self.loaded.spec.model.kind
        raise UsageError(
            f"dlx score needs a kind that scores examples (an autoencoder); this run's model "
            f"kind is {kind}"
        )

    def sample_inputs(self, splits: Splits) -> Any:
        """Inputs for the logged model's signature; None when there are none to show.

        A streamed source gives the first few examples of its first epoch."""
        if splits.stream is not None:
            x, _ = next(iter(splits.train.take(1)))
            return _first(x)
        return None if splits.train_arrays is None else splits.train_arrays[0]


def _first(x: Any) -> Any:
    """The first `SIGNATURE_SAMPLE` examples of a batch of inputs (a tensor or a mapping), text
    as Python strings (as text sources of arrays gave it)."""
    if isinstance(x, dict):
        return {name: _first(value) for name, value in x.items()}
    first = np.asarray(x)[:SIGNATURE_SAMPLE]
    if first.dtype == object:
        return np.array([value.decode("utf-8") for value in first.ravel()], object).reshape(
            first.shape
        )
    return first


def callback_metrics(names: set[str], callbacks: list[Any]) -> set[str] | None:
    """`names` and what `callbacks` add to each epoch's logs: Keras's learning-rate callbacks
    (`reduce_lr_on_plateau`, `learning_rate_scheduler`) log `learning_rate`; a callback of a
    plugin's may log anything (`None`)."""
    if any(not type(callback).__module__.startswith("keras.") for callback in callbacks):
        return None
    return (names | {"learning_rate"}) if callbacks else names


TASKS: dict[str, type[Task]] = {}
"""The task of each model kind, by `model.kind` (see `register_task`)."""


def register_task(kind: str) -> Callable[[type[Task]], type[Task]]:
    """Register a `Task` subclass as the task of the model kind `kind` (`model.kind`)."""

    def register(task: type[Task]) -> type[Task]:
        TASKS[kind] = task
        return task

    return register


def task_for(loaded: LoadedSpec) -> Task:
    """The task of a spec's model kind.

    Raises:
        DlxError: no task is registered for the kind: the module that registers it was not
            imported (`dlx.train.kinds` imports those of dlx's own kinds).
    """
    kind = loaded.spec.model.kind
    if kind not in TASKS:
        raise DlxError(
            f"no task is registered for the model kind '{kind}' (registered: "
            f"{', '.join(sorted(TASKS)) or 'none'}); import the module that registers it with "
            "@register_task, e.g. dlx.train.kinds for dlx's own kinds"
        )
    return TASKS[kind](loaded)


@register_task("supervised")
class SupervisedTask(Task):
    """Inputs `x`, targets `y`: the default kind; with a backbone, an optional fine-tune stage."""

    def build(self, jit_compile: Any) -> Any:
        model, args = self.build_with_compile_args()
        self._compile = dict(
            loss=args.loss,
            loss_weights=args.loss_weights,
            metrics=args.metrics,
            jit_compile=jit_compile,
        )
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
        assert fine_tune is not None  # the fine-tune stage exists only with `train.fine_tune`
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

    def check_targets(self, model: Any, splits: Splits) -> None:
        """Check the targets against the model's output and loss, with numpy, before training.

        Only array sources are checked (a dataset's values are not read again), and only a
        model with one output: targets must be numbers and finite; class ids for
        `sparse_categorical_crossentropy` must be whole numbers from 0 to the output's units
        minus 1; one-hot targets for `categorical_crossentropy` must have as many columns as
        the output has units; targets of `binary_crossentropy` must lie in 0..1.

        Raises:
            SpecError: at `data.source`, saying what the model expects and what the data holds.
        """
        arrays = [splits.train_arrays, splits.validation_arrays, splits.test_arrays]
        given = [a[1] for a in arrays if a is not None and a[1] is not None]
        several = [t for t in given if isinstance(t, dict)]
        if several:
            self._check_several_targets(model, several)
            return
        targets = [np.asarray(t) for t in given]
        targets += [np.asarray(labels) for labels in splits.labels or () if labels is not None]
        if not targets:
            return
        if len(model.outputs) != 1:
            raise self.loaded.error(
                ("data", "source"),
                f"the model has {len(model.outputs)} outputs ({', '.join(model.output_names)}) "
                "and the data one target: give the targets as a mapping of output name to "
                "targets (y, or a label mapping)",
            )
        y = np.concatenate([t.reshape(len(t), -1) for t in targets])
        units = model.outputs[0].shape[-1]
        loss = _loss_name(self._compile["loss"])
        problem = _target_problem(y, loss, units, _output(self.loaded))
        if problem:
            raise self.loaded.error(("data", "source"), problem)

    def _check_several_targets(self, model: Any, given: list[dict[str, Any]]) -> None:
        """Targets by output name: exactly the model's outputs, each checked against its own
        output and loss."""
        names = list(model.output_names)
        found = list(given[0])
        unknown = [name for name in found if name not in names]
        missing = [name for name in names if name not in found]
        if unknown or missing:
            said = [f"no output named {', '.join(unknown)}" if unknown else ""]
            said += [f"no targets for {', '.join(missing)}" if missing else ""]
            raise self.loaded.error(
                ("data", "source"),
                f"the data's targets ({', '.join(found)}) do not match the model's outputs "
                f"({', '.join(names)}): {'; '.join(s for s in said if s)}",
            )
        losses = self._compile["loss"]
        for index, name in enumerate(names):
            y = np.concatenate([np.asarray(t[name]).reshape(len(t[name]), -1) for t in given])
            loss = _loss_name(losses.get(name) if isinstance(losses, dict) else losses)
            units = model.outputs[index].shape[-1]
            problem = _target_problem(y, loss, units, f"the output '{name}'")
            if problem:
                raise self.loaded.error(("data", "source"), f"output '{name}': {problem}")

    def fit_arguments(self, splits: Splits) -> dict[str, Any]:
        weight = self.loaded.spec.train.class_weight
        if weight is None:
            return {}
        if len(self.loaded.spec.model.outputs or []) > 1 and not isinstance(
            self.loaded.spec.model.outputs, str
        ):
            raise self.loaded.error(
                ("train", "class_weight"),
                "class weights weigh the classes of one output; this model has several "
                "(weigh the outputs with train.loss_weights instead)",
            )
        if isinstance(weight, dict):
            return {"class_weight": {int(k): float(v) for k, v in weight.items()}}
        if splits.labels is not None and splits.labels[0] is not None:
            y = np.asarray(splits.labels[0]).astype(int)
        elif splits.train_arrays is None:
            raise self.loaded.error(
                ("train", "class_weight"),
                "balanced class weights need the labels before training: a source that gives "
                "arrays, CSV files or class folders (a TFRecord source's labels are known only "
                "as it is read); give class_weight as a mapping of class id to weight instead",
            )
        else:
            y = np.asarray(splits.train_arrays[1]).reshape(-1).astype(int)
        classes, counts = np.unique(y, return_counts=True)
        balanced = len(y) / (len(classes) * counts)
        return {"class_weight": {int(c): float(w) for c, w in zip(classes, balanced, strict=True)}}

    def log_artifacts(self, run: Any, model: Any, splits: Splits) -> None:
        """A confusion matrix for classifiers, on the test split (else validation)."""
        if len(model.outputs) != 1:
            return
        arrays = splits.test_arrays or splits.validation_arrays
        if arrays is not None:
            x, y = arrays
            if y is None or not np.issubdtype(np.asarray(y).dtype, np.integer):
                return
            scores = model.predict(x, verbose=0, batch_size=self.loaded.spec.train.batch_size)
        elif splits.labels is not None:
            # A streamed source: its labels and predictions from one pass over the split's
            # batches (with `on_error: skip`, files that fail are left out of both).
            split = (splits.test, 2) if splits.test is not None else (splits.validation, 1)
            if split[0] is None or splits.labels[split[1]] is None:
                return
            y, scores = _labels_and_scores(model, split[0])
        else:
            return
        y = np.asarray(y)
        if not np.issubdtype(y.dtype, np.integer) or scores.ndim != 2:
            return
        from dlx.track import confusion_matrix_figure

        figure = confusion_matrix_figure(y.reshape(-1), scores, splits.class_names)
        run.log_figure(figure, "confusion_matrix.png")


def _labels_and_scores(model: Any, batches: Any) -> tuple[Any, Any]:
    """The labels of a dataset of `(x, y)` batches and the model's scores for them, in one
    pass."""
    labels, scores = [], []
    for batch in batches:
        labels.append(np.asarray(batch[1]))
        scores.append(np.asarray(model.predict_on_batch(batch[0])))
    if not labels:
        return np.zeros(0, dtype=int), np.zeros((0, 0))
    return np.concatenate(labels), np.concatenate(scores)


_SPARSE_LOSSES = {"sparse_categorical_crossentropy"}
_ONE_HOT_LOSSES = {"categorical_crossentropy", "categorical_focal_crossentropy"}
_BINARY_LOSSES = {"binary_crossentropy", "binary_focal_crossentropy"}


def _loss_name(loss: Any) -> str:
    """A loss's Keras name (`sparse_categorical_crossentropy`); empty for a mapping or list."""
    name = getattr(loss, "name", None) or getattr(loss, "__name__", None)
    return name if isinstance(name, str) else ""


def _target_problem(y: np.ndarray, loss: str, units: int | None, output: str) -> str | None:
    """What is wrong with targets `y` (one row per example) for a loss and an output of
    `units`, which the spec writes at `output`; `None` when nothing is."""
    if not (np.issubdtype(y.dtype, np.number) or y.dtype == bool):
        return f"the targets are {y.dtype} values (e.g. {y.flat[0]!r}); expected numbers"
    bad = np.flatnonzero(~np.isfinite(y).all(axis=1))
    if bad.size:
        return f"the targets hold {y[bad[0]].tolist()}: expected finite numbers (no NaN or inf)"
    if units is None:
        return None
    have = f"the model's output has {units} unit{'s' if units != 1 else ''} ({output})"
    if loss in _SPARSE_LOSSES:
        if y.shape[1] != 1 or (np.issubdtype(y.dtype, np.floating) and np.any(y != np.round(y))):
            return (
                f"{loss} needs one class id per example (0..{units - 1}); the targets are "
                f"shaped {[None, *y.shape[1:]]} with values like {y[0].tolist()}"
            )
        low, high = int(y.min()), int(y.max())
        if low < 0 or high >= units:
            return (
                f"labels go {'down to ' + str(low) if low < 0 else 'up to ' + str(high)} but "
                f"{have}; {loss} needs labels 0..{units - 1}"
            )
    elif loss in _ONE_HOT_LOSSES and y.shape[1] != units:
        return (
            f"the targets have {y.shape[1]} column{'s' if y.shape[1] != 1 else ''} but {have}; "
            f"{loss} needs one-hot targets of {units} columns (for class ids, use "
            "sparse_categorical_crossentropy)"
        )
    elif loss in _BINARY_LOSSES and (y.min() < 0 or y.max() > 1):
        return f"the targets go from {y.min():g} to {y.max():g}; {loss} needs targets in 0..1"
    return None


def _output(loaded: LoadedSpec) -> str:
    """Where the spec writes the model's output: `dense at line 12`."""
    model = loaded.spec.model
    path: PathKey
    if model.outputs is not None:
        first = model.outputs if isinstance(model.outputs, str) else model.outputs[0]
        path, name = ("model", "outputs"), f"the entry '{first}'"
    elif model.layers:
        path, name = (
            ("model", "layers", len(model.layers) - 1),
            split_component(model.layers[-1])[0],
        )
    else:
        return "the last entry"
    location = loaded.document.locate(path)
    if location is None or location.path == "--set":
        return name
    return f"{name} at line {location.line}"


def _check_inputs(loaded: LoadedSpec, model: Any, splits: Splits) -> None:
    """Check that the data has the model's inputs: as many, of the same shapes, and text
    where the model reads text (`dtype: string`), numbers where it reads numbers."""
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
        # The input layer's name: its tensor's is Keras's own (`keras_tensor`) unless named.
        name = next(
            (layer.name for layer in model.layers if layer.output is model_input), model_input.name
        )
        got = tuple(data_spec.shape[1:])
        want = tuple(model_input.shape[1:])
        fits = len(got) == len(want) and all(
            w is None or g is None or g == w for g, w in zip(got, want, strict=True)
        )
        if not fits:
            raise loaded.error(
                ("data", "source"),
                f"the data's examples have shape {list(got)} but the model's input "
                f"'{name}' expects {list(want)}",
            )
        data_text, model_text = data_spec.dtype.name == "string", model_input.dtype == "string"
        if data_text and not model_text:
            raise loaded.error(
                ("data", "source"),
                f"the data's inputs are text but the model's input '{name}' expects "
                f"numbers ({model_input.dtype}); a model that reads text starts with "
                "input: {shape: [], dtype: string}",
            )
        if model_text and not data_text:
            raise loaded.error(
                ("data", "source"),
                f"the data's inputs are numbers ({data_spec.dtype.name}) but the model's input "
                f"'{name}' expects text (dtype: string)",
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
    if splits.stream is not None:
        # A streamed source: adapt on a bounded sample, the first examples of the first epoch
        # (of the whole split: alike on every worker of a job, even one sharded by file).
        steps = -(-min(splits.num_train, ADAPT_SAMPLE) // splits.batch_size)
        sample = splits.train.take(steps)
        for layer in adaptable:
            # Several inputs (a TFRecord source's) come as a mapping by the inputs' names.
            name = next((i.name for i in model.layers if i.output is layer.input), layer.input.name)
            layer.adapt(sample.map(lambda x, y, name=name: x[name] if isinstance(x, dict) else x))
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
