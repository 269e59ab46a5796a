"""The spec language, version 1, as strict pydantic models (docs/spec.md sections 1 and 3-7).

These models check the *shape* of a spec: keys, types, ranges. What a component's name and
arguments mean (does `dens` exist? does `dense` take `unit`?) is checked by `dlx.build`, which
knows Keras; this module imports neither TensorFlow nor Keras.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    WithJsonSchema,
    model_validator,
)

from dlx.errors import received
from dlx.spec.baseline import Baseline
from dlx.spec.component import split_component
from dlx.spec.strict import Integer, Strict, whole_number_as_int

SPEC_VERSION = 1
MAX_SEED = 2**32 - 1
"""The largest seed NumPy takes (`keras.utils.set_random_seed` seeds it too)."""


DEFINED_IN_JSON_SCHEMA = "dlx:defined-in"
"""The key of a placeholder in the models' JSON Schema for a definition that the JSON Schema's
generation fills in (`dlx.spec.json_schema`): what the models cannot know, such as the data
sources that `dlx.data` registers."""


def defined_in_json_schema(name: str) -> dict[str, str]:
    """A placeholder for `$defs/NAME`, which `dlx.spec.json_schema.json_schema` provides."""
    return {DEFINED_IN_JSON_SCHEMA: name}


_COMPONENT_JSON_SCHEMA = {
    "description": "A component: its name alone, or a mapping {name: arguments}.",
    "anyOf": [
        {"type": "string"},
        {"type": "object", "minProperties": 1, "maxProperties": 1},
    ],
}


def _component_check(label: str) -> Callable[[Any], Any]:
    """The check of one kind of component, written `name` or `{name: arguments}`.

    `label` names the kind in messages: `expected a metric: a name, or a mapping ...`.
    """

    def check(value: Any) -> Any:
        split_component(value, label)  # its ComponentError is a ValueError: pydantic reports it
        return value

    return check


# One kind of component each (a name, or a mapping {name: arguments}), checked as `label`:
# written out, not made by a function, so that type checkers read them as types.
Source = Annotated[
    Any,
    AfterValidator(_component_check("data source")),
    WithJsonSchema(defined_in_json_schema("DataSource")),
]
LayerEntry = Annotated[
    Any, AfterValidator(_component_check("layer")), WithJsonSchema(_COMPONENT_JSON_SCHEMA)
]
Entries = list[LayerEntry]
Metric = Annotated[
    Any, AfterValidator(_component_check("metric")), WithJsonSchema(_COMPONENT_JSON_SCHEMA)
]
CallbackComponent = Annotated[
    Any, AfterValidator(_component_check("callback")), WithJsonSchema(_COMPONENT_JSON_SCHEMA)
]
PrunerComponent = Annotated[
    Any,
    AfterValidator(_component_check("pruner")),
    WithJsonSchema(defined_in_json_schema("Pruner")),
]

GAN_ROLES = ("generator", "discriminator")


def _check_steps_per_execution(value: Any) -> Any:
    value = whole_number_as_int(value)
    if value == "auto" or (type(value) is int and value > 0):
        return value
    raise ValueError(f"expected 'auto' or a positive integer. Received: {value!r}")


StepsPerExecution = Annotated[
    Any,
    AfterValidator(_check_steps_per_execution),
    WithJsonSchema({"anyOf": [{"const": "auto"}, {"type": "integer", "minimum": 1}]}),
]


def _check_optimizer(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == set(GAN_ROLES):
        for role in GAN_ROLES:
            split_component(value[role], "optimizer")
        return value
    split_component(value, "optimizer")
    return value


Optimizer = Annotated[
    Any,
    AfterValidator(_check_optimizer),
    WithJsonSchema(
        {
            "description": "An optimizer; for a GAN, {generator: ..., discriminator: ...}.",
            "anyOf": [
                _COMPONENT_JSON_SCHEMA,
                {
                    "type": "object",
                    "properties": {role: _COMPONENT_JSON_SCHEMA for role in GAN_ROLES},
                    "required": list(GAN_ROLES),
                    "additionalProperties": False,
                },
            ],
        }
    ),
]


def _given(name: str, **properties: dict[str, Any]) -> dict[str, Any]:
    """The JSON Schema of a mapping that gives `name` (present, and not null), its other keys
    as `properties` say."""
    return {"required": [name], "properties": {name: {"not": {"type": "null"}}, **properties}}


class ValidationSource(Strict):
    source: Source = Field(description="Where the split's data comes from (a data source).")


def _split_form(value: Any) -> str:
    return "wrapped" if isinstance(value, dict) and "source" in value else "source"


ExplicitSplit = Annotated[
    Annotated[ValidationSource, Tag("wrapped")] | Annotated[Source, Tag("source")],
    Discriminator(_split_form),
]
"""An explicit validation or test split: `{source: component}`, or the source component itself."""


class Window(Strict):
    """Section 3 (extension): cut a time series into windows, to forecast it."""

    size: Integer = Field(gt=0, description="Time steps in each input window.")
    horizon: Integer = Field(1, gt=0, description="How many steps after the window the target is.")
    stride: Integer = Field(1, gt=0, description="Steps between the starts of two windows.")


class DiskCache(Strict):
    """Section 3: keep the decoded examples of a streamed source in files (tf.data's cache)."""

    disk: str = Field(description="The cache's file prefix, relative to the spec's directory.")


class Data(Strict):
    """Section 3: where the data comes from and how it is split."""

    source: Source = Field(description="A data source component, e.g. {sklearn: digits}.")
    validation_split: float = Field(
        0.0, ge=0.0, lt=1.0, description="Fraction held out for validation."
    )
    validation: ExplicitSplit | None = Field(
        None, description="An explicit validation source: {source: ...} or the source itself."
    )
    test_split: float = Field(0.0, ge=0.0, lt=1.0, description="Fraction held out for the test.")
    test: ExplicitSplit | None = Field(
        None, description="An explicit test source: {source: ...} or the source itself."
    )
    shuffle: bool = Field(True, description="Shuffle the training data each epoch (seeded).")
    window: Window | None = Field(
        None,
        description="Forecast a series: inputs are windows of the source's rows, the target "
        "the row `horizon` steps after each; splits are then chronological.",
    )
    shuffle_buffer: Integer = Field(
        10000,
        gt=0,
        description="Examples in the shuffle buffer of a streamed source of many examples "
        "per file or a disk cache (the file order is shuffled too); in-memory sources and "
        "files of one example are shuffled whole.",
    )
    cache: Literal["auto", "memory", "none"] | DiskCache = Field(
        "auto",
        description="Where a streamed source's decoded examples are kept: auto "
        "(in memory when its files take under 256 MB), memory, none, or {disk: path}.",
    )
    on_error: Literal["fail", "skip"] = Field(
        "fail",
        description="A streamed file that cannot be decoded: fail (the run fails, naming "
        "it) or skip (its example is left out, and counted).",
    )
    fingerprint: Literal["files", "content"] = Field(
        "files",
        description="How a streamed source's files are fingerprinted: files (paths, sizes "
        "and modification times; nothing read) or content (their bytes, all read once).",
    )

    def explicit_sources(self) -> list[tuple[str, Any, tuple[str, ...]]]:
        """The explicit validation and test sources: each split's name, its source component,
        and the spec keys it is written at (`("data", "test", "source")`, or `("data", "test")`
        for a source written directly)."""
        found: list[tuple[str, Any, tuple[str, ...]]] = []
        for name in ("validation", "test"):
            value = getattr(self, name)
            if isinstance(value, ValidationSource):
                found.append((name, value.source, ("data", name, "source")))
            elif value is not None:
                found.append((name, value, ("data", name)))
        return found

    @model_validator(mode="after")
    def _one_validation(self) -> Data:
        if self.validation is not None and self.validation_split:
            raise ValueError("give either validation_split or validation, not both")
        if self.test is not None and self.test_split:
            raise ValueError("give either test_split or test, not both")
        if self.validation_split + self.test_split >= 1.0:
            raise ValueError("validation_split + test_split must leave some training data")
        return self


class Block(Strict):
    """Section 4.3: a named, parameterised list of entries, used like a layer."""

    params: dict[str, Any] | list[str] = Field(
        default_factory=dict,
        description="Parameters: a mapping of defaults, or a list of required names.",
    )
    layers: Entries = Field(description="The block's entries; `$param` is replaced by its value.")


BACKBONE_ORIGINS = ("application", "run", "model")
"""Where a backbone comes from: exactly one of these is given."""


class Backbone(Strict):
    """Section 4.4: a pretrained network the `layers` are applied to (transfer learning)."""

    model_config = ConfigDict(
        json_schema_extra=lambda schema: schema.update(oneOf=[_given(k) for k in BACKBONE_ORIGINS])
    )

    application: str | None = Field(None, description="A keras.applications constructor name.")
    weights: str | None = Field("imagenet", description="imagenet, a weights file, or null.")
    input_shape: list[Integer] | None = None
    run: str | None = Field(None, description="An MLflow run id whose model is the backbone.")
    model: str | None = Field(None, description="A .keras file whose model is the backbone.")
    until: str | None = Field(None, description="The backbone's last layer, by name.")
    trainable: bool = False

    @model_validator(mode="after")
    def _one_origin(self) -> Backbone:
        given = [k for k in BACKBONE_ORIGINS if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "a backbone needs exactly one of application, run or model. "
                f"Received: {', '.join(given) or 'none'}"
            )
        return self


class Model(Strict):
    """Section 4: the network."""

    kind: Literal["supervised", "autoencoder", "gan"] = "supervised"
    blocks: dict[str, Block] = Field(default_factory=dict)
    layers: Entries | None = None
    outputs: list[str] | str | None = None
    backbone: Backbone | None = None
    encoder: Entries | None = None
    decoder: Entries | None = None
    latent_dim: Integer | None = Field(None, gt=0)
    noise_stddev: float | None = Field(
        None, gt=0, description="Autoencoder: Gaussian noise on the inputs only (denoising)."
    )
    sample_every: Integer | None = Field(
        None, gt=0, description="GAN: log a grid of generated samples every N epochs (default 5)."
    )
    generator: Entries | None = None
    discriminator: Entries | None = None

    @model_validator(mode="after")
    def _parts_of_kind(self) -> Model:
        kind = MODEL_KINDS[self.kind]
        missing = [part for part in kind.needs if getattr(self, part) is None]
        if missing:
            raise ValueError(f"a {self.kind} model needs {', '.join(missing)}")
        others = {field for other in MODEL_KINDS.values() for field in other.fields}
        wrong = [
            field
            for field in sorted(others - set(kind.fields), key=list(Model.model_fields).index)
            if getattr(self, field) is not None
        ]
        if wrong:
            raise ValueError(f"{', '.join(wrong)} do not belong to a {self.kind} model")
        return self


@dataclass(frozen=True)
class ModelKind:
    """What the `model` section of a kind holds (`model.kind`)."""

    needs: tuple[str, ...]
    """The `model` fields it must have."""
    fields: tuple[str, ...]
    """The `model` fields of its own; another kind's own fields are errors in it. Fields no
    kind lists (`blocks`, `outputs`, `backbone`) are every kind's."""


MODEL_KINDS: dict[str, ModelKind] = {
    "supervised": ModelKind(needs=("layers",), fields=("layers",)),
    "autoencoder": ModelKind(
        needs=("encoder", "decoder"), fields=("encoder", "decoder", "noise_stddev")
    ),
    "gan": ModelKind(
        needs=("latent_dim", "generator", "discriminator"),
        fields=("latent_dim", "generator", "discriminator", "sample_every"),
    ),
}
"""The model kinds of the spec language, by `model.kind`; `register_model_kind` adds one."""


def register_model_kind(name: str, kind: ModelKind) -> None:
    """Add a model kind to the spec language: `model.kind: NAME` validates from now on.

    What the kind trains is its task (`dlx.train.tasks.register_task`); this is what its spec
    holds. A kind that needs `model` fields of its own adds them to `Model` first.
    """
    MODEL_KINDS[name] = kind
    # A Literal of names known only at run time: a type form, where pydantic's field says `type`.
    Model.model_fields["kind"].annotation = Literal[tuple(MODEL_KINDS)]  # type: ignore[assignment]
    Model.model_rebuild(force=True)
    Spec.model_rebuild(force=True)


class FineTune(Strict):
    """Section 4.4: a second training stage with the top of the backbone unfrozen."""

    unfreeze: Integer | Literal["all"] = Field(
        description="How many top backbone layers to unfreeze."
    )
    epochs: Integer = Field(gt=0)
    learning_rate: float = Field(1e-5, gt=0)


class Train(Strict):
    """Section 5: how the model is trained."""

    epochs: Integer = Field(default=1, gt=0, description="Passes over the training data.")
    batch_size: Integer = Field(
        default=32, gt=0, le=2**31 - 1, description="The global batch, split across replicas."
    )
    optimizer: Optimizer = Field(
        default="rmsprop", description="The optimizer (Keras's default: rmsprop)."
    )
    loss: Any = Field(
        default=None, description="A loss component, or a mapping of output name to loss component."
    )
    loss_weights: dict[str, Annotated[float, Field(ge=0, allow_inf_nan=False)]] | None = Field(
        default=None,
        description="With several outputs: each output's weight in the loss that is minimized "
        "(default 1 each).",
    )
    metrics: list[Metric] | dict[str, list[Metric]] = Field(default_factory=list)
    callbacks: list[CallbackComponent] = Field(default_factory=list)
    class_weight: Literal["balanced"] | dict[int, float] | None = None
    fine_tune: FineTune | None = None
    on_nan: Literal["stop", "continue"] = Field(
        default="stop",
        description="When an epoch's loss is NaN or infinite: stop the run (FAILED), or go on.",
    )
    steps_per_execution: StepsPerExecution = Field(
        default="auto",
        description=(
            "Training steps run in one call into TensorFlow: a positive integer, or auto (as "
            "many as take a few tens of milliseconds). Always a divisor of the epoch's steps: "
            "the largest one not above the number asked for."
        ),
    )

    @property
    def total_epochs(self) -> int:
        """The epochs of the whole run: `epochs`, and the fine-tuning stage's."""
        return self.epochs + (self.fine_tune.epochs if self.fine_tune is not None else 0)


class Runtime(Strict):
    """Section 6: where and how the model runs."""

    backend: Literal["tensorflow", "jax"] = Field(
        default="tensorflow",
        description="The Keras backend that trains the model: tensorflow (tf.distribute "
        "strategies) or jax (keras.distribution).",
    )
    strategy: Literal[
        "auto",
        "default",
        "one_device",
        "mirrored",
        "multi_worker_mirrored",
        "tpu",
        "parameter_server",
    ] = "auto"
    devices: list[str] | None = None
    tpu: str | None = None
    mixed_precision: Literal["mixed_float16", "mixed_bfloat16"] | None = None
    jit_compile: bool | Literal["auto"] = "auto"
    deterministic: bool = False


class Tracking(Strict):
    """Section 7: where the run is recorded."""

    experiment: str | None = Field(
        default=None, description="MLflow experiment; default: the spec's name."
    )
    uri: str | None = Field(
        default=None, description="Tracking URI; default: $MLFLOW_TRACKING_URI or ./mlflow.db."
    )
    tags: dict[str, str] = Field(default_factory=dict)
    log_model: bool = True


EXACT_IN_FLOAT = 2**53
"""The largest integer up to which every integer is a float: Optuna records a trial's values as
floats, so a sweep's integers, and the number of values a `uniform` range's `step` cuts, stay
within it."""


def _check_exact_in_float(value: int) -> int:
    if abs(value) > EXACT_IN_FLOAT:
        raise ValueError(
            "expected an integer from -2**53 to 2**53 (Optuna records each value as a float). "
            f"Received: {received(value)}"
        )
    return value


Bound = Annotated[float, Field(allow_inf_nan=False)]
"""A bound of a `uniform` range: a finite number."""
PositiveBound = Annotated[float, Field(gt=0, allow_inf_nan=False)]
"""A bound of a `log_uniform` range: a finite number above 0."""
IntegerBound = Annotated[
    Integer,
    AfterValidator(_check_exact_in_float),
    WithJsonSchema({"type": "integer", "minimum": -EXACT_IN_FLOAT, "maximum": EXACT_IN_FLOAT}),
]
"""A bound of an `int` range."""


def _one_kind_json_schema(schema: dict[str, Any]) -> None:
    """What `SweepParam._one_kind` checks that JSON Schema can say: exactly one kind is given,
    and `step` only with `int` (a whole number) or `uniform`."""
    steps = {"choice": "null", "log_uniform": "null", "int": ["integer", "null"]}
    schema["oneOf"] = [
        _given(kind, **({"step": {"type": steps[kind]}} if kind in steps else {}))
        for kind in SWEEP_KINDS
    ]


class SweepParam(Strict):
    """Section 10: the values one swept path takes: exactly one of `choice`, `uniform`,
    `log_uniform` or `int` (with an optional `step`).

    Numbers are finite, and what Optuna keeps exactly: it records each value as a float, so an
    `int` range lies within +-2**53 and a `uniform` range with a `step` holds at most 2**53
    values.
    """

    model_config = ConfigDict(json_schema_extra=_one_kind_json_schema)

    choice: list[Any] | None = Field(None, min_length=1, description="The values to choose from.")
    uniform: list[Bound] | None = Field(
        None, min_length=2, max_length=2, description="[low, high]: any number between."
    )
    log_uniform: list[PositiveBound] | None = Field(
        None, min_length=2, max_length=2, description="[low, high], low > 0: drawn on a log scale."
    )
    integer: list[IntegerBound] | None = Field(
        None,
        alias="int",
        min_length=2,
        max_length=2,
        description="[low, high]: an integer between, both in.",
    )
    step: float | None = Field(
        None, gt=0, allow_inf_nan=False, description="With int or uniform: the values' spacing."
    )

    @model_validator(mode="after")
    def _one_kind(self) -> SweepParam:
        given = [k for k in SWEEP_KINDS if self.values_of(k) is not None]
        if len(given) != 1:
            raise ValueError(
                f"expected exactly one of {', '.join(SWEEP_KINDS)}. "
                f"Received: {', '.join(given) or 'none'}"
            )
        (kind,) = given
        bounds = self.values_of(kind)
        assert bounds is not None  # `given` holds the kinds whose values are set
        if kind != "choice" and not bounds[0] < bounds[1]:
            raise ValueError(f"{kind}: expected low < high. Received: {bounds}")
        if kind == "uniform" and not math.isfinite(bounds[1] - bounds[0]):
            raise ValueError(
                "uniform: the range is wider than a float holds (high - low overflows). "
                f"Received: {bounds}"
            )
        if self.step is not None and kind not in ("int", "uniform"):
            raise ValueError(f"step applies to int and uniform, not to {kind}")
        if kind == "int" and self.step is not None and self.step != round(self.step):
            raise ValueError(f"int: expected an integer step. Received: {self.step}")
        steps = (bounds[1] - bounds[0]) / self.step if self.step else 0
        if kind == "uniform" and steps > EXACT_IN_FLOAT:
            raise ValueError(
                f"uniform: a step of {self.step} cuts {bounds} into more than 2**53 values "
                "(Optuna records each as a float): give a larger step"
            )
        return self

    def values_of(self, kind: str) -> list[Any] | None:
        return getattr(self, "integer" if kind == "int" else kind)

    @property
    def kind(self) -> str:
        return next(k for k in SWEEP_KINDS if self.values_of(k) is not None)

    @property
    def values(self) -> list[Any]:
        """The choices, or [low, high]."""
        return list(self.values_of(self.kind) or [])

    def checked_values(self) -> list[Any]:
        """The values the spec is validated at before a sweep: each choice, or both bounds."""
        values = self.values
        if self.kind == "int" and self.step:  # the highest value reachable from low by steps
            low, high, step = values[0], values[1], round(self.step)
            return [low, low + (high - low) // step * step]
        return list(values)


SWEEP_KINDS = ("choice", "uniform", "log_uniform", "int")


class Sweep(Strict):
    """Section 10: a hyperparameter search over the spec's own values (`dlx sweep`)."""

    metric: str = Field(description="The final metric to optimize, e.g. val_accuracy.")
    goal: Literal["max", "min"] | None = Field(
        None, description="Default: min when the metric's name says loss or error, else max."
    )
    method: Literal["grid", "random", "tpe", "cmaes"] = Field(
        "tpe", description="Optuna's sampler: grid, random, tpe or cmaes."
    )
    trials: Integer | None = Field(
        None, gt=0, description="How many trials; default: every grid point for grid, else 10."
    )
    params: dict[str, SweepParam] = Field(
        min_length=1, description="Dotted paths (those --set takes) and the values they take."
    )
    prune: PrunerComponent | None = Field(
        None,
        description="Stop poor trials early, fed each epoch's metric: median, hyperband or "
        "successive_halving, e.g. {median: {warmup_epochs: 2}}.",
    )
    repeats: Integer = Field(
        1, gt=0, description="Seeds per configuration; the sweep optimizes their mean."
    )


class Spec(Strict):
    """A dlx spec: one experiment, from data to tracking."""

    version: Literal[1] = Field(description="Spec language version.")
    name: str | None = Field(
        None, description="Run name and default experiment; default: the file's stem."
    )
    description: str | None = None
    seed: Integer = Field(
        0,
        ge=0,
        le=MAX_SEED,
        description="Seeds Python, NumPy and TensorFlow: an integer from 0 to 2**32 - 1.",
    )
    plugins: list[str] = Field(
        default_factory=list, description="Modules imported before building."
    )
    data: Data | None = None
    model: Model
    # Train's and Tracking's fields give `default=` by name: type checkers then see that these
    # two are made without arguments.
    train: Train = Field(default_factory=Train)
    runtime: Runtime = Field(default_factory=Runtime)
    tracking: Tracking = Field(default_factory=Tracking)
    sweep: Sweep | None = Field(
        None, description="A hyperparameter search, run by `dlx sweep`; `dlx train` ignores it."
    )
    baseline: Baseline | None = Field(
        None, description="The baseline to check runs against, and the gate: `dlx baseline`."
    )
