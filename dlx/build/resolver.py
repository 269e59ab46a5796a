"""Names -> Keras objects: one resolver for every kind of component (docs/spec.md section 2).

Keras's own public names are the registry, as in `keras/src/optimizers/__init__.py`: a kind's
catalogue is read from `dir()` of its public module and filtered by base class; names match
without regard to case or underscores. Nothing here is a table of names typed by hand.
"""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dlx.errors import SpecError, did_you_mean
from dlx.spec import Document, PathKey, normalize_name, split_component
from dlx.spec.component import ComponentError


@dataclass(frozen=True)
class Kind:
    """A kind of component: where Keras keeps it and which of its objects count."""

    label: str
    module: str
    base: str | None = None
    functions: bool = False
    """Also accept plain functions (losses, metrics and activations are functions too)."""
    snake_case: bool = True
    """Suggest names as specs usually write them (`max_pooling2d`), not as Keras spells them."""


LAYER = Kind("layer", "keras.layers", "keras.layers.Layer")
OPTIMIZER = Kind("optimizer", "keras.optimizers", "keras.optimizers.Optimizer")
LOSS = Kind("loss", "keras.losses", "keras.losses.Loss", functions=True)
METRIC = Kind("metric", "keras.metrics", "keras.metrics.Metric", functions=True)
CALLBACK = Kind("callback", "keras.callbacks", "keras.callbacks.Callback")
INITIALIZER = Kind("initializer", "keras.initializers", "keras.initializers.Initializer")
REGULARIZER = Kind("regularizer", "keras.regularizers", "keras.regularizers.Regularizer")
CONSTRAINT = Kind("constraint", "keras.constraints", "keras.constraints.Constraint")
ACTIVATION = Kind("activation", "keras.activations", None, functions=True)
SCHEDULE = Kind(
    "learning-rate schedule",
    "keras.optimizers.schedules",
    "keras.optimizers.schedules.LearningRateSchedule",
)

# Arguments that take Keras objects, and the kind of object each takes (docs/spec.md section 2).
APPLICATION = Kind("application", "keras.applications", None, functions=True, snake_case=False)

_OBJECT_ARGUMENT_SUFFIXES = (
    ("_initializer", INITIALIZER),
    ("_regularizer", REGULARIZER),
    ("_constraint", CONSTRAINT),
    ("activation", ACTIVATION),
)
_OBJECT_ARGUMENTS = {"layer": LAYER, "backward_layer": LAYER, "learning_rate": SCHEDULE}


def _import(dotted: str) -> Any:
    """`keras.optimizers.schedules.LearningRateSchedule` -> the object (attributes of `keras`)."""
    import importlib

    first, *rest = dotted.split(".")
    obj = importlib.import_module(first)
    for attribute in rest:
        obj = getattr(obj, attribute)
    return obj


@functools.cache
def catalogue(kind: Kind) -> dict[str, tuple[str, Any]]:
    """Every public object of `kind`: normalized name -> (Keras's name, object).

    Classes win over functions of the same normalized name (`MeanSquaredError` over
    `mean_squared_error`), so that arguments can always be given.
    """
    module = _import(kind.module)
    base = _import(kind.base) if kind.base else None
    found: dict[str, tuple[str, Any]] = {}
    for name in sorted(dir(module)):
        if name.startswith("_"):
            continue
        obj = getattr(module, name)
        if inspect.isclass(obj):
            if base is not None and not issubclass(obj, base):
                continue
            if base is None and not kind.functions:
                continue
            found[normalize_name(name)] = (name, obj)
        elif kind.functions and inspect.isfunction(obj):
            found.setdefault(normalize_name(name), (name, obj))
        elif kind is LAYER and name == "Input":
            found[normalize_name(name)] = (name, obj)
    return found


class Resolver:
    """Turns components written in a spec into Keras objects, with errors located in the spec.

    Args:
        document: the spec's document, to locate errors.
        trail: text appended to every error (e.g. which block use an entry came from).
    """

    def __init__(self, document: Document, trail: str = "") -> None:
        self.document = document
        self.trail = trail

    def error(self, path: PathKey, message: str, *, key: bool = False) -> SpecError:
        return self.document.error(path, message + self.trail, key=key)

    def with_trail(self, trail: str) -> Resolver:
        return Resolver(self.document, self.trail + trail)

    def split(
        self, value: Any, path: PathKey, label: str = "component"
    ) -> tuple[str, list[Any], dict[str, Any]]:
        """`split_component`, with its error located at `path` in the spec.

        Raises:
            SpecError: `value` is not a component.
        """
        try:
            return split_component(value, label)
        except ComponentError as exc:
            raise self.error((*path, *exc.path), str(exc), key=exc.on_key) from None

    def find(self, kind: Kind, name: str, path: PathKey, *, key: bool = True) -> tuple[str, Any]:
        """Find a component by name: Keras's name and the class or function.

        `key` says whether the name is written as a mapping's key (`{adam: {...}}`) or alone.

        Raises:
            SpecError: no such component; the message names the closest real ones.
        """
        if ">" in name:
            import keras

            obj = keras.saving.get_registered_object(name)
            if obj is None:
                raise self.error(
                    path,
                    f"no {kind.label} registered as '{name}'; is the module that registers it "
                    "listed under plugins:?",
                    key=key,
                )
            return name, obj
        table = catalogue(kind)
        found = table.get(normalize_name(name)) or _keras_alias(kind, name)
        if found is None:
            names = [spec_name(n) if kind.snake_case else n for n, _ in table.values()]
            hint = did_you_mean(name, names, normalize=normalize_name)
            raise self.error(path, f"unknown {kind.label} '{name}'{hint}", key=key)
        return found

    def build(self, kind: Kind, value: Any, path: PathKey, **extra: Any) -> Any:
        """Build the Keras object a component describes.

        Args:
            kind: the kind of component expected at `path`.
            value: the component as written: a name or `{name: arguments}`.
            path: where the component is in the spec.
            extra: keyword arguments dlx adds (e.g. a layer's `name`).
        """
        name, args, kwargs = self.split(value, path, kind.label)
        inner = (*path, name) if isinstance(value, dict) else path
        keras_name, factory = self.find(kind, name, inner, key=isinstance(value, dict))
        if kind.functions and inspect.isfunction(factory) and not args and not kwargs:
            return factory  # a loss or metric function (`mse`) is itself the component
        kwargs = {k: self.argument(k, v, (*inner, k)) for k, v in kwargs.items()}
        args = [self.argument("", a, inner) for a in args]
        return self.call(keras_name, factory, args, {**kwargs, **extra}, inner)

    def argument(self, key: str, value: Any, path: PathKey) -> Any:
        """Resolve an argument's value: object-taking arguments accept the one notation too."""
        kind = self.object_kind(key)
        if kind is None or value is None or isinstance(value, (bool, int, float)):
            return value
        if isinstance(value, list):
            return value
        if kind is ACTIVATION:
            return self.activation(value, path)
        return self.build(kind, value, path)

    @staticmethod
    def object_kind(key: str) -> Kind | None:
        if key in _OBJECT_ARGUMENTS:
            return _OBJECT_ARGUMENTS[key]
        for suffix, kind in _OBJECT_ARGUMENT_SUFFIXES:
            if key == suffix.lstrip("_") or key.endswith(suffix):
                return kind
        return None

    def activation(self, value: Any, path: PathKey) -> Any:
        """`relu` -> Keras's own activation name; `{leaky_relu: {negative_slope: 0.2}}` -> a layer.

        An activation with arguments is the activation layer of that name (`LeakyReLU`, `ELU`,
        `Softmax`, ...), which Keras accepts wherever it accepts an activation.
        """
        name, _, _ = self.split(value, path, ACTIVATION.label)
        if ">" in name:
            return self.find(ACTIVATION, name, path, key=False)[1]
        if isinstance(value, str):
            keras_name, _ = self.find(ACTIVATION, name, path, key=False)
            return keras_name
        if normalize_name(name) in catalogue(LAYER):
            return self.build(LAYER, value, path)
        self.find(ACTIVATION, name, path)
        raise self.error(
            path,
            f"the activation '{name}' takes no arguments; write it as a name alone",
            key=True,
        )

    def call(
        self,
        keras_name: str,
        factory: Callable[..., Any],
        args: list[Any],
        kwargs: dict[str, Any],
        path: PathKey,
    ) -> Any:
        """Call a Keras constructor, reporting a bad argument at its line in the spec."""
        if inspect.isclass(factory) or inspect.isfunction(factory):
            accepted = accepted_arguments(factory)
            for key in kwargs:
                if accepted is not None and key not in accepted:
                    hint = did_you_mean(key, sorted(accepted))
                    raise self.error(
                        (*path, key), f"unknown argument '{key}' for {keras_name}{hint}", key=True
                    )
        try:
            return factory(*args, **kwargs)
        except SpecError:
            raise
        except Exception as exc:  # Keras raises many types for bad arguments
            message = keras_message(exc)
            named = [k for k in kwargs if f"`{k}`" in message or f"{k}=" in message]
            where, on_key = ((*path, named[0]), False) if named else (path, True)
            raise self.error(where, f"{keras_name}: {message}", key=on_key) from None


def _keras_alias(kind: Kind, name: str) -> tuple[str, Any] | None:
    """Keras's own short identifiers (`mse`, `mae`, `bce`, `normal`) through its public `get`."""
    get = getattr(_import(kind.module), "get", None)
    if get is None:
        return None
    try:
        obj = get(name)
    except (ValueError, TypeError):
        return None
    if obj is None:
        return None
    if inspect.isclass(obj) or inspect.isfunction(obj):
        return name, obj
    return name, type(obj)


def accepted_arguments(factory: Callable[..., Any]) -> set[str] | None:
    """The keyword arguments a constructor accepts, following `**kwargs` up the class tree.

    Returns None when the set cannot be known (a `**kwargs` that reaches no known base).
    """
    import keras

    classes = factory.__mro__ if inspect.isclass(factory) else (factory,)
    accepted: set[str] = set()
    for cls in classes:
        init = cls.__init__ if inspect.isclass(cls) else cls
        if init is object.__init__:
            return accepted
        try:
            signature = inspect.signature(init)
        except (TypeError, ValueError):
            return None
        params = signature.parameters.values()
        accepted |= {
            p.name
            for p in params
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self"
        }
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            return accepted
        if cls is keras.layers.Layer:
            # Layer.__init__ takes these through **kwargs (keras/src/layers/layer.py).
            return accepted | {"input_shape", "input_dim", "batch_size", "batch_input_shape"}
    return None


def spec_name(keras_name: str) -> str:
    """How a spec usually writes a Keras name: `MaxPooling2D` -> `max_pooling2d`."""
    return _WORD_START.sub("_", keras_name).lower()


_WORD_START = re.compile(r"(?<=[a-z0-9])(?=[A-Z][a-z])|(?<=[A-Z])(?=[A-Z][a-z])")


def keras_message(exc: BaseException) -> str:
    """Keras's message, without the `Arguments received by ...` appendix, on one line."""
    text = str(exc).split("\n\nArguments received")[0].strip()
    text = " ".join(line.strip() for line in text.splitlines() if line.strip())
    return text or type(exc).__name__
