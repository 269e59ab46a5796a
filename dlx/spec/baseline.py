"""Section 11 of a spec: `baseline`, the run its runs are checked against and the gate
(`dlx baseline check`, `dlx.track.baseline`)."""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, WithJsonSchema

from dlx.errors import received
from dlx.spec.strict import Strict

TOLERANCE = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?%?$"
"""A gate's tolerance as text: a number, signed or not, with `%` for one relative to the
baseline's value (`+2%`)."""

_TOLERANCE_JSON_SCHEMA: dict[str, Any] = {
    "anyOf": [{"type": "number"}, {"type": "string", "pattern": TOLERANCE}],
    "description": "How much worse than the baseline's value the metric may end: -0.005, +2%.",
}


def _tolerance(value: Any) -> Any:
    text = isinstance(value, str) and re.fullmatch(TOLERANCE, value)
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if not (text or number and math.isfinite(value)):
        raise ValueError(
            "expected a tolerance: a number (-0.005) or a percentage of the baseline's value "
            f"(+2%). Received: {received(value)}"
        )
    return value


Tolerance = Annotated[
    float | str, BeforeValidator(_tolerance), WithJsonSchema(_TOLERANCE_JSON_SCHEMA)
]


class GateRule(Strict):
    tolerance: Tolerance = 0
    better: Literal["higher", "lower"] | None = Field(
        None, description="Which way the metric is better; default: lower for losses and errors."
    )


def _gate_rule(value: Any) -> Any:
    return value if isinstance(value, dict) else {"tolerance": _tolerance(value)}


GateEntry = Annotated[
    GateRule,
    BeforeValidator(_gate_rule),
    WithJsonSchema(
        {
            "anyOf": [
                _TOLERANCE_JSON_SCHEMA,
                {
                    "type": "object",
                    "properties": {
                        "tolerance": _TOLERANCE_JSON_SCHEMA,
                        "better": {"enum": ["higher", "lower"]},
                    },
                    "additionalProperties": False,
                },
            ]
        }
    ),
]


class Baseline(Strict):
    """Section 11: the run this spec's runs are checked against (`dlx baseline check`)."""

    file: str | None = Field(
        None,
        description="The baseline file, relative to the spec; default: "
        "<spec file's stem>.baseline.json beside it.",
    )
    gate: dict[str, GateEntry] = Field(
        default_factory=dict,
        description="Per final metric, how much worse than the baseline's it may end: "
        "-0.005 (absolute), +2% (of the baseline's value), or {tolerance, better}.",
    )
