"""Putting runs side by side: which params differ, final metrics, the best of each, deltas.

Pure data: `compare_references` (what `dlx.api.compare` calls) returns a `Comparison`; `dlx.cli`
renders it as a table, markdown, CSV or JSON.
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dlx.errors import DlxError
from dlx.track.columns import distinct_numbers, distinct_params, short_names
from dlx.track.read import Experiment, Params, Store, open_store, short_id
from dlx.track.tags import PARENT_RUN, PRUNED, SWEEP, SWEEP_METRIC

# Metrics whose name says an error or a loss are better low; everything else (accuracy, AUC,
# precision, ...) better high.
_LOWER_IS_BETTER = re.compile(r"loss|error|mse|mae|mape|msle|rmse|hinge|crossentropy|divergence")

_FIRST_COLUMNS = ("run", "name", "status")

_TAGS_READ = (PRUNED, PARENT_RUN, SWEEP, SWEEP_METRIC)
"""The tags of a listing's runs that a comparison reads."""


def higher_is_better(metric: str) -> bool:
    return not _LOWER_IS_BETTER.search(metric.lower())


@dataclass
class Comparison:
    """Runs side by side.

    Attributes:
        runs: the runs, best first when sorted by a metric: all of them, or the first `limit`
            that `compare` was given.
        total: how many runs were compared (more than `runs` holds when they were limited).
        params: the param columns: those whose values differ between the runs (or all).
        metrics: the metric columns.
        sort: the metric the runs are sorted by, if any.
        best_epoch: run id (of `runs`) -> the epoch at which the sorted metric was best,
            counted from 1 as training shows epochs (MLflow's steps count from 0).
        best: metric -> the ids of the runs with the best final value (all of them on a tie),
            of all the runs compared.
        deltas: for two runs: (metric, first value, second value) for every metric either has.
        spec_diff: for two runs: a unified diff of their logged specs (empty when the same).
    """

    runs: list[Any]
    params: list[str]
    metrics: list[str]
    total: int
    sort: str | None = None
    best_epoch: dict[str, int] = field(default_factory=dict)
    best: dict[str, set[str]] = field(default_factory=dict)
    deltas: list[tuple[str, float | None, float | None]] | None = None
    spec_diff: str | None = None

    def param_names(self) -> dict[str, str]:
        """Each param's short name (`dlx.track.columns.short_names`) to its dotted path."""
        names = short_names(self.params, taken=[*_FIRST_COLUMNS, *self.metrics])
        return {short: path for path, short in names.items()}

    def records(self) -> list[dict[str, Any]]:
        """One JSON-ready object per run (docs/spec.md section 8)."""
        names = self.param_names()
        records = []
        for run in self.runs:
            record = {
                "run_id": run.info.run_id,
                "run_name": run.info.run_name,
                "status": "PRUNED" if PRUNED in run.data.tags else run.info.status,
                "params": {p: run.data.params.get(p) for p in self.params},
                "metrics": {m: run.data.metrics.get(m) for m in self.metrics},
                "param_names": names,
            }
            if self.sort:
                record["best_epoch"] = self.best_epoch.get(run.info.run_id)
            records.append(record)
        return records

    def rows(self, *, short: bool = False) -> tuple[list[str], list[list[str]]]:
        """Header and rows of text cells, one per run: by default, for markdown and CSV,
        params by their dotted paths and as logged; `short`, for a terminal's table, params by
        their short names (`param_names`) and each column's numbers with the digits that tell
        its values apart (`dlx.track.columns`)."""
        records = self.records()
        params = list(self.param_names()) if short else self.params
        header = [*_FIRST_COLUMNS, *params, *self.metrics]
        columns = [[r["run_id"][:8] for r in records], [r["run_name"] or "" for r in records]]
        columns.append([r["status"] for r in records])
        for param in self.params:
            values = [r["params"][param] for r in records]
            columns.append(distinct_params(values) if short else [_text(v) for v in values])
        for metric in self.metrics:
            values = [r["metrics"][metric] for r in records]
            columns.append(distinct_numbers(values) if short else [_number(v) for v in values])
        if self.sort:
            header.append(f"best epoch ({self.sort})")
            columns.append([_text(r["best_epoch"]) for r in records])
        return header, [list(row) for row in zip(*columns, strict=True)]


def compare_references(
    references: list[str] | tuple[str, ...] = (),
    *,
    experiment: str | None = None,
    filter: str = "",
    sort: str | None = None,
    metrics: list[str] | None = None,
    all_params: bool = False,
    limit: int | None = None,
    diff: bool = True,
    plot: str | Path | None = None,
    tracking_uri: str | None = None,
) -> Comparison:
    """Runs given by reference side by side (`dlx.api.compare` documents the arguments)."""
    uri, name, ids = tracking_uri, experiment, []
    for reference in references:
        if reference.endswith((".yaml", ".yml")):
            from dlx.spec import load_spec

            loaded = load_spec(reference)
            tracking = loaded.spec.tracking
            uri, name = uri or tracking.uri, name or tracking.experiment or loaded.name
        else:
            ids.append(reference)
    store = open_store(uri, filter=filter)

    def listed(experiment: Experiment) -> list[Any]:
        """The experiment's runs, each with the params that differ between them (those that
        differ between some of them are among these) and the tags a comparison reads."""
        params: Params = "all" if all_params else "differing"
        return store.runs(experiment, filter=filter, params=params, tags=_TAGS_READ)

    found = store.find(ids) if ids else listed(store.experiment(name))
    if len(found) == 1 and SWEEP in found[0].data.tags:
        parent = found[0]
        sort = sort or parent.data.tags.get(SWEEP_METRIC)
        siblings = listed(Experiment(str(parent.info.experiment_id), ""))
        found = [r for r in siblings if r.data.tags.get(PARENT_RUN) == parent.info.run_id]
    if not found:
        raise DlxError("no runs to compare")
    result = compare(store, found, metrics=metrics, all_params=all_params, sort=sort, limit=limit)
    if diff and result.total == len(result.runs) == 2:
        first, second = result.runs
        result.deltas = metric_deltas(first, second)
        result.spec_diff = spec_diff(store, first, second)
    if plot is not None:
        curves_figure(store, result).savefig(plot, dpi=110)
    return result


def compare(
    store: Store,
    runs: list[Any],
    *,
    metrics: list[str] | None = None,
    all_params: bool = False,
    sort: str | None = None,
    limit: int | None = None,
) -> Comparison:
    """Compare runs: differing params, final metrics, best values, best epoch of `sort`; of
    all `runs`, and the first `limit` (after sorting) kept, with their best epochs."""
    names = sorted({p for run in runs for p in run.data.params})
    if not all_params:
        names = [p for p in names if len({run.data.params.get(p) for run in runs}) > 1]
    metric_names = metrics or sorted({m for run in runs for m in run.data.metrics})
    if sort is not None:
        sign = -1 if higher_is_better(sort) else 1

        def final(run: Any) -> tuple[bool, float]:
            """The sort key: runs without a number (missing, or NaN) last, in their order."""
            value = run.data.metrics.get(sort, math.nan)
            return (math.isnan(value), 0.0 if math.isnan(value) else sign * value)

        runs = sorted(runs, key=final)
    comparison = Comparison(
        runs=runs[:limit], params=names, metrics=metric_names, sort=sort, total=len(runs)
    )
    for metric in metric_names:
        values = {
            run.info.run_id: value
            for run in runs
            if not math.isnan(value := run.data.metrics.get(metric, math.nan))
        }
        if values:
            best = (max if higher_is_better(metric) else min)(values.values())
            comparison.best[metric] = {run_id for run_id, v in values.items() if v == best}
    if sort is not None:
        # Only the kept runs' best epochs: a table of the best 50 of 10,000 runs reads 50.
        kept = [r.info.run_id for r in comparison.runs]
        steps = store.best_steps(kept, sort, higher_is_better(sort))
        comparison.best_epoch = {run_id: step + 1 for run_id, step in steps.items()}
    return comparison


def metric_deltas(first: Any, second: Any) -> list[tuple[str, float | None, float | None]]:
    """(metric, first value, second value) for every metric either run has."""
    names = sorted(set(first.data.metrics) | set(second.data.metrics))
    return [(m, first.data.metrics.get(m), second.data.metrics.get(m)) for m in names]


def spec_diff(store: Store, first: Any, second: Any) -> str:
    """A unified diff of two runs' resolved specs (empty when they are the same)."""
    a, b = (store.spec_text(run.info.run_id) for run in (first, second))
    lines = difflib.unified_diff(
        a.splitlines(keepends=True),
        b.splitlines(keepends=True),
        fromfile=f"{short_id(first)}/spec.yaml",
        tofile=f"{short_id(second)}/spec.yaml",
    )
    return "".join(lines)


def curves_figure(store: Store, comparison: Comparison) -> Any:
    """The learning curves of the compared runs, overlaid, one panel per metric, by epoch
    counted from 1; the runs' legend beside the panels, where it covers no curve."""
    from dlx.track.plots import epoch_panels

    metrics = [m for m in comparison.metrics if not m.startswith("test_")] or comparison.metrics
    figure, panels = epoch_panels(metrics, legend_outside=True)
    for metric, axes in zip(metrics, panels, strict=True):
        for index, run in enumerate(comparison.runs):
            points = store.history(run.info.run_id, metric)
            if points:
                steps, values = zip(*points, strict=True)
                label = f"{short_id(run)} {run.info.run_name or ''}".strip()
                color = f"C{index % 10}"  # a run's color is the same in every panel
                axes.plot([step + 1 for step in steps], values, ".-", color=color, label=label)
    lines: dict[str, Any] = {}
    for axes in figure.axes:
        for line, label in zip(*axes.get_legend_handles_labels(), strict=True):
            lines.setdefault(label, line)
    if lines:
        figure.legend(
            list(lines.values()), list(lines), loc="outside right upper", fontsize="small"
        )
    return figure


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.4g}"
