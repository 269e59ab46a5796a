"""`strict_json` writes strict JSON, NaN and infinities as null: a list an item per line, anything
else as `json.dumps(value, indent=2)` writes it."""

import json
import math

import pytest

from dlx.cli.render import strict_json


def _finite(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


SHARED = {"learning_rate": "train.optimizer.adam.learning_rate"}

VALUES = [
    [],
    {},
    [{}, [], [[]], {"a": {}}],
    "plain",
    'quotes " and \\ backslashes, tabs \t and newlines \n, control \x01, é, 日本, 🙂',
    [0, -1, 2**70, 1.5, -0.0, 1e-300, 1e300, 0.1 + 0.2, True, False, None],
    [math.nan, math.inf, -math.inf, {"loss": math.nan, "accuracy": 0.5}],
    {1: "int key", 2.5: "float key", False: "bool key", None: "none key", "é": "unicode key"},
    {"runs": [{"run_id": "a", "param_names": SHARED}, {"run_id": "b", "param_names": SHARED}]},
    ({"tuple": (1, 2)},),
]


def _refuse(constant):
    raise AssertionError(f"{constant} is not strict JSON")


def _normal(value):
    """`value` as JSON reads it back: tuples as lists, keys as strings."""
    return json.loads(json.dumps(_finite(value)))


@pytest.mark.parametrize("value", VALUES, ids=range(len(VALUES)))
def test_strict_json_reads_back_as_the_value_with_non_finite_numbers_as_null(value):
    assert json.loads(strict_json(value), parse_constant=_refuse) == _normal(value)


@pytest.mark.parametrize("value", VALUES, ids=range(len(VALUES)))
def test_a_list_is_an_item_per_line_and_anything_else_is_indented(value):
    text = strict_json(value)
    if isinstance(value, (list, tuple)) and value:
        lines = text.split("\n")
        assert lines[0] == "[" and lines[-1] == "]"
        items = [line.removeprefix("  ").removesuffix(",") for line in lines[1:-1]]
        assert [json.loads(item) for item in items] == _normal(value)
    else:
        assert text == json.dumps(_finite(value), indent=2, allow_nan=False)


def test_what_json_cannot_write_is_refused_as_json_refuses_it():
    for value in [{1, 2}, object(), {(1, 2): "tuple key"}]:
        with pytest.raises(TypeError):
            strict_json(value)
