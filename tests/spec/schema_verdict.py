"""What an editor says of a spec: the JSON Schema of `dlx schema`, checked by `jsonschema`.

Editors read YAML into JSON, whose keys are strings; `schema_refusals` reads a spec's data
(as dlx reads it: YAML 1.2 numbers) the same way, and returns what the schema refuses in it.
"""

from __future__ import annotations

from typing import Any

import jsonschema

from dlx import api

SCHEMA = api.schema()
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


def as_json(data: Any) -> Any:
    """`data` as JSON holds it: every key a string."""
    if isinstance(data, dict):
        return {_json_key(key): as_json(value) for key, value in data.items()}
    if isinstance(data, list):
        return [as_json(item) for item in data]
    return data


def _json_key(key: Any) -> str:
    if isinstance(key, bool) or key is None:
        return {True: "true", False: "false", None: "null"}[key]
    return str(key)


def schema_refusals(data: Any) -> list[str]:
    """What the JSON Schema refuses in a spec's data, each as `path: message`.

    A value that fits none of the forms a key takes (`anyOf`, `oneOf`) is reported where the
    form that went deepest into it failed: `data.source.tfrecord: Additional properties...`,
    not `data: ... is not valid under any of the given schemas`.
    """
    refusals = []
    for error in VALIDATOR.iter_errors(as_json(data)):
        deepest = max(_leaves(error), key=lambda leaf: len(leaf.absolute_path))
        path = ".".join(map(str, deepest.absolute_path))
        refusals.append(f"{path}: {deepest.message[:300]}")
    return refusals


def _leaves(error: jsonschema.ValidationError) -> list[jsonschema.ValidationError]:
    if not error.context:
        return [error]
    return [leaf for inner in error.context for leaf in _leaves(inner)]
