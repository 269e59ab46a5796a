"""Runs side by side in columns: each param by the shortest name that tells it apart from the
others (`short_names`), and each column's numbers with the digits that tell its values apart
(`distinct_numbers`, `distinct_params`).

A swept param's dotted path (`train.optimizer.adam.learning_rate`) is as long as a terminal's
column is wide, and four significant digits can show two learning rates of a sweep alike; a
table that cuts both answers nothing. `dlx compare` and `dlx sweep` show them this way, with
the full paths beside the table.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_INTEGER = re.compile(r"[+-]?\d+")
_LEAST_DIGITS = 4
_MOST_DIGITS = 17  # enough to tell any two float64 values apart


def short_names(paths: Iterable[str], taken: Iterable[str] = ()) -> dict[str, str]:
    """The shortest name of each dotted path that no other path (nor a name in `taken`) shares:
    its last segment, with the segments before it added only where two would be alike.

    Args:
        paths: dotted paths, e.g. the params that differ between runs.
        taken: names already used beside them (a table's other columns).

    Returns:
        Each path to its short name, in the order of `paths`.

    Example:

    >>> short_names(["train.optimizer.adam.lr", "layers.1.units", "layers.2.units"])
    {'train.optimizer.adam.lr': 'lr', 'layers.1.units': '1.units', 'layers.2.units': '2.units'}
    """
    segments = {path: path.split(".") for path in dict.fromkeys(paths)}
    depth = dict.fromkeys(segments, 1)
    reserved = set(taken)
    while True:
        names = {path: ".".join(parts[-depth[path] :]) for path, parts in segments.items()}
        sharing: dict[str, list[str]] = {}
        for path, name in names.items():
            sharing.setdefault(name, []).append(path)
        longer = [
            path
            for name, alike in sharing.items()
            if len(alike) > 1 or name in reserved
            for path in alike
            if depth[path] < len(segments[path])
        ]
        if not longer:
            return names
        for path in longer:
            depth[path] += 1


def distinct_numbers(values: Sequence[float | None], least: int = _LEAST_DIGITS) -> list[str]:
    """Numbers as text, all with the fewest significant digits (at least `least`) that keep
    different values different; `None` is an empty cell."""
    known = {value for value in values if value is not None}
    digits = least
    while digits < _MOST_DIGITS and len({f"{v:.{digits}g}" for v in known}) < len(known):
        digits += 1
    return ["" if value is None else _written(value, digits) for value in values]


def _written(value: float, digits: int) -> str:
    """`value` with at most `digits` significant digits, and no more than it needs to be read
    back as itself (`0.3`, not `0.29999999999999999`)."""
    for fewer in range(1, digits):
        text = f"{value:.{fewer}g}"
        if float(text) == value:
            return text
    return f"{value:.{digits}g}"


def distinct_params(values: Sequence[str | None]) -> list[str]:
    """Params as logged (text), a column at a time: where every value is a number and some are
    not integers, as `distinct_numbers` writes them; otherwise as they are."""
    written = [value for value in values if value]
    if any(not _NUMBER.fullmatch(value) for value in written) or all(
        _INTEGER.fullmatch(value) for value in written
    ):
        return ["" if value is None else value for value in values]
    return distinct_numbers([float(value) if value else None for value in values])
