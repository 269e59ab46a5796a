"""Spec data -> MLflow params: dotted keys, plain-text values, within MLflow's limits.

MLflow refuses a param, tag or metric whose key is longer than 250 characters or holds a
character outside letters, digits, `_ - . / : space`; it refuses (or silently cuts) a param
value over 6,000 characters and a tag value over 8,000. Logging a spec must never fail on
that, and must never lose a value without saying so: keys are made safe by a fixed rule, and a
long value is cut with a visible marker that points to the full spec logged beside it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

# MLflow's own limits (`mlflow.utils.validation`), copied so that flattening a spec does not
# import MLflow; a test pins them to MLflow's values.
MAX_KEY_LENGTH = 250
MAX_PARAM_VALUE_LENGTH = 6000
MAX_TAG_VALUE_LENGTH = 8000

PARAM_TRUNCATION_MARKER = "…(truncated, see spec.yaml)"
TAG_TRUNCATION_MARKER = "…(truncated)"

# MLflow also allows `/` and (except on Windows) `:`, but a `/` makes the key a path that must
# normalise to itself, and a `:` would not load on Windows; neither is worth the surprise.
UNSAFE_CHARACTERS = re.compile(r"[^\w.\- ]")
"""Characters dlx replaces with `_` in the names it logs and the folders it names: every
character other than letters, digits, `_`, `-`, `.` and space."""
_HASH_LENGTH = 8


def safe_key(key: str) -> str:
    """Make `key` acceptable to MLflow as a param, tag or metric name, by a fixed rule.

    Every character other than letters, digits, `_`, `-`, `.` and space becomes `_`; a key that
    is empty or starts with `.` gets a leading `_`; a key over 250 characters keeps its first
    241 and ends with `_` and 8 hex digits of its SHA-256, so that long keys stay distinct.

    Args:
        key: the name to log.

    Returns:
        The name as MLflow will store it; `key` itself when it is already acceptable.

    Example:

    >>> safe_key("tracking.tags.owner@team")
    'tracking.tags.owner_team'
    """
    safe = UNSAFE_CHARACTERS.sub("_", key)
    if not safe or safe.startswith("."):
        safe = "_" + safe
    if len(safe) > MAX_KEY_LENGTH:
        safe = _with_hash_of(key, safe)
    return safe


def short_hash(text: str) -> str:
    """The first 8 hex digits of the SHA-256 of `text`: a short suffix that tells names apart."""
    return hashlib.sha256(text.encode()).hexdigest()[:_HASH_LENGTH]


def truncate_value(value: str, limit: int, marker: str) -> str:
    """Cut `value` to at most `limit` characters, ending with `marker` when anything was cut."""
    if len(value) <= limit:
        return value
    return value[: limit - len(marker)] + marker


def format_value(value: Any) -> str:
    """Write one spec value as a param: YAML's spelling of scalars, so `--set` reads it back.

    `None` is `null`, booleans are `true`/`false`, numbers and strings are as Python prints
    them, and an empty list or mapping is `[]` or `{}` (so that it is not lost in flattening).
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "[]"
    if isinstance(value, Mapping):
        return "{}"
    return str(value)


def flatten_params(data: Mapping[str, Any]) -> dict[str, str]:
    """Flatten a spec's plain data into MLflow params with dotted keys.

    Mappings add their keys and lists add their indexes to the path, so
    `{"train": {"optimizer": {"adam": {"learning_rate": 0.001}}}}` gives
    `train.optimizer.adam.learning_rate = 0.001` and the fourth layer's units are
    `model.layers.3.dense.units`. Empty lists and mappings are kept as `[]` and `{}`.
    Keys go through `safe_key`; should two keys become one, the later one is suffixed with
    `_` and 8 hex digits of the original key's SHA-256. Values are not cut here: long ones are
    cut when they are logged (`TrackedRun.log_params`).

    Args:
        data: the spec as plain data (`LoadedSpec.document.data`, after overrides).

    Returns:
        Param keys to values, in the order they appear in the spec.

    Example:

    >>> flatten_params({"seed": 1, "model": {"layers": ["flatten", {"dense": {"units": 10}}]}})
    {'seed': '1', 'model.layers.0': 'flatten', 'model.layers.1.dense.units': '10'}
    """
    # Imported here: `dlx compare` and `dlx runs` import this module (through `dlx.track`) but
    # never flatten a spec, and `dlx.spec` (its pydantic models) costs them ~60 ms.
    from dlx.spec import format_path

    params: dict[str, str] = {}
    for path, value in _leaves(data, ()):
        key = format_path(path)
        name = safe_key(key)
        if name in params:
            name = _with_hash_of(key, name)
        params[name] = format_value(value)
    return params


def _leaves(value: Any, path: tuple[str | int, ...]):
    if isinstance(value, Mapping) and value:
        for key, item in value.items():
            yield from _leaves(item, (*path, str(key)))
    elif isinstance(value, list | tuple) and value:
        for index, item in enumerate(value):
            yield from _leaves(item, (*path, index))
    else:
        yield path, value


def _with_hash_of(key: str, name: str) -> str:
    """`name`, cut to leave room within MLflow's key length for `_` and `key`'s short hash."""
    return name[: MAX_KEY_LENGTH - _HASH_LENGTH - 1] + "_" + short_hash(key)
