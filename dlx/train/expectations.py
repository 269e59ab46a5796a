"""`--expect 'val_accuracy>=0.95'`: gates a CI job can put on a run's final metrics."""

from __future__ import annotations

import operator
import re
from dataclasses import dataclass

from dlx.errors import UsageError

_OPERATORS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt}
_EXPECTATION = re.compile(
    r"^\s*([A-Za-z_][\w./-]*)\s*(>=|<=|>|<)\s*([-+]?[\d.]+(?:[eE][-+]?\d+)?)\s*$"
)


@dataclass(frozen=True)
class Expectation:
    metric: str
    op: str
    value: float

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{self.value:g}"

    def failure(self, metrics: dict[str, float]) -> str | None:
        """Why `metrics` do not meet this expectation, or None when they do."""
        if self.metric not in metrics:
            known = ", ".join(sorted(metrics)) or "none"
            return f"{self}: the run recorded no metric '{self.metric}' (it has: {known})"
        got = metrics[self.metric]
        if _OPERATORS[self.op](got, self.value):
            return None
        return f"{self}: not met, {self.metric} = {got:.6g}"


def parse_expectations(texts: list[str]) -> list[Expectation]:
    """Parse `METRIC>=VALUE` gates (`>=`, `<=`, `>`, `<`).

    Raises:
        UsageError: a gate that does not parse (exit status 2, before anything runs).
    """
    parsed = []
    for text in texts:
        match = _EXPECTATION.match(text)
        if not match:
            raise UsageError(
                f"--expect: expected METRIC>=VALUE (or <=, >, <), e.g. 'val_accuracy>=0.95'. "
                f"Received: {text!r}"
            )
        metric, op, value = match.groups()
        try:
            number = float(value)
        except ValueError:
            raise UsageError(f"--expect: '{value}' is not a number in {text!r}") from None
        parsed.append(Expectation(metric, op, number))
    return parsed
