"""The sources of data that code makes: seeded `synthetic` data, and what a user's `python`
function returns (docs/spec.md section 3)."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

from dlx.data.sources import (
    SourceContext,
    SourceData,
    SourceError,
    _check_finite,
    _positive_int,
    _shape,
    check_arguments,
    register_source,
)
from dlx.errors import did_you_mean

# The `synthetic` source projects its inputs this many features at a time, so that the random
# projection matrix of a large input (224x224x3 features, 1000 classes) never sits in memory whole.
_PROJECTION_CHUNK = 16384


def _check_synthetic(
    context: SourceContext,
    samples: int,
    x_shape: int | list[int],
    classes: int | None = None,
    targets: int | None = None,
) -> tuple[int, tuple[int, ...], int]:
    """Check the arguments; the number of samples, the shape of one input, and the number of
    classes or targets."""
    count = _positive_int(samples, "samples")
    shape = _shape(x_shape, "x_shape")
    if (classes is None) == (targets is None):
        raise SourceError(
            "expected exactly one of classes (classification) or targets (regression). "
            f"Received: classes={classes!r}, targets={targets!r}",
            "classes",
        )
    argument = "classes" if targets is None else "targets"
    return count, shape, _positive_int(classes if targets is None else targets, argument)


@register_source("synthetic", check=_check_synthetic)
def synthetic(
    context: SourceContext,
    samples: int,
    x_shape: int | list[int],
    classes: int | None = None,
    targets: int | None = None,
) -> SourceData:
    """Seeded random data that a model can learn, for smoke tests and benchmarks.

    Inputs are standard normal float32. The targets are a fixed random linear projection of
    the inputs: with `classes`, the int32 class whose projection is largest (so even a linear
    model can fit them and the loss falls); with `targets`, the projection itself, float32 and
    shaped `(samples, targets)`. The same seed gives the same data.

    Args:
        context: the spec's seed.
        samples: how many examples.
        x_shape: the shape of one input: `[8, 8, 1]`, or `20` for a vector.
        classes: the number of classes, for classification.
        targets: the number of regression targets, instead of `classes`.

    Example: `{synthetic: {samples: 512, x_shape: [32], classes: 3}}`.
    """
    count, shape, outputs = _check_synthetic(context, samples, x_shape, classes, targets)
    rng = np.random.default_rng(context.seed)
    x = rng.standard_normal((count, *shape), dtype=np.float32)
    flat = x.reshape(count, -1)
    projection = np.zeros((count, outputs), dtype=np.float32)
    for start in range(0, flat.shape[1], _PROJECTION_CHUNK):
        part = flat[:, start : start + _PROJECTION_CHUNK]
        projection += part @ rng.standard_normal((part.shape[1], outputs), dtype=np.float32)
    projection /= np.sqrt(flat.shape[1], dtype=np.float32)
    y = projection.argmax(axis=1).astype(np.int32) if targets is None else projection
    kind = f"{outputs} classes" if targets is None else f"{outputs} targets"
    return SourceData(
        x=x, y=y, description=f"synthetic: {count} examples shaped {list(shape)}, {kind}"
    )


def _check_python(context: SourceContext, function: str, **arguments: Any) -> Callable[..., Any]:
    """Import the function's module (as training does) and check the function's arguments;
    the function."""
    module_name, _, attribute = (
        function.partition(":") if isinstance(function, str) else ("", "", "")
    )
    if not module_name or not attribute:
        raise SourceError(
            f"expected function to be 'module:function'. Received: {function!r}", "function"
        )
    if str(context.base_dir) not in sys.path:
        sys.path.insert(0, str(context.base_dir))
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name != module_name and not module_name.startswith(f"{error.name}."):
            raise
        raise SourceError(
            f"no module named '{module_name}' in {context.base_dir} or on sys.path", "function"
        ) from None
    make = getattr(module, attribute, None)
    if not callable(make):
        public = [name for name in vars(module) if not name.startswith("_")]
        raise SourceError(
            f"module '{module_name}' has no function '{attribute}'"
            f"{did_you_mean(attribute, public)}",
            "function",
        )
    check_arguments(function, make, [], arguments)
    return make


def _as_arrays(value: Any) -> Any:
    """An array, or a mapping of names to arrays (a model's several inputs or outputs)."""
    if isinstance(value, dict):
        return {str(key): np.asarray(array) for key, array in value.items()}
    return np.asarray(value)


@register_source("python", check=_check_python)
def from_python(context: SourceContext, function: str, **arguments: Any) -> SourceData:
    """The data a Python function of the user's returns.

    The function's module is imported with the spec's directory first on `sys.path`, as
    Python does for a script's directory. The function returns arrays `(x, y)` (`x` may be a
    mapping of input name to array; `y` a mapping of output name to array, for a model with
    several outputs, or `None`), or a `tf.data.Dataset` of unbatched `(x, y)` examples.
    Returned arrays of numbers must be finite (no NaN or infinity).

    Args:
        context: the spec's directory, put on `sys.path`.
        function: `module:function`, e.g. `my_data:load`.
        **arguments: keyword arguments for the function.

    Example: `{python: "my_data:load"}`, `{python: {function: "my_data:load", rows: 100}}`.
    """
    make = _check_python(context, function, **arguments)
    result = make(**arguments)
    if isinstance(result, tuple | list) and len(result) == 2:
        x, y = result
        data = SourceData(
            x=_as_arrays(x), y=None if y is None else _as_arrays(y), description=function
        )
        for name, array in data.named_arrays():
            head, _, key = name.partition(".")
            what = name if name in ("x", "y") else f"{head}['{key}']" if key else f"x['{name}']"
            _check_finite(array, f"the {what} that {function} returns", "function")
        return data

    import tensorflow as tf

    if isinstance(result, tf.data.Dataset):
        return SourceData(dataset=result, description=function)
    raise SourceError(
        f"expected {function} to return arrays (x, y) or a tf.data.Dataset. "
        f"Received: {type(result).__name__}",
        "function",
    )
