"""How the `dlx` command shows what `dlx.api` returns: tables, markdown, CSV and strict JSON.

One function per command's result; each prints to stdout (`stderr` for notes and errors). Rich
and the csv module are imported here, inside the functions, so `dlx --help` stays instant.
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from dlx.errors import relative_path

if TYPE_CHECKING:
    from dlx.build.description import ModelDescription
    from dlx.sweep import SweepResult, TrialRow


def stderr(text: str) -> None:
    """Print to stderr as written: no markup, no highlighting, no wrapping."""
    from rich.console import Console

    Console(stderr=True, highlight=False, soft_wrap=True).print(text, markup=False)


def strict_json(value: Any) -> str:
    """Strict JSON, as `JSON.parse` and other strict readers take it: a number that is NaN or
    infinite (a run that diverged) is written as null, since JSON has no such numbers.

    A list is written an item per line (`dlx runs` and `dlx compare` a run per line, so `grep`
    and `diff` work on runs), anything else indented by two spaces. The items are written by
    `json`'s C encoder, which takes no indent: Python's, which does, took most of a second for
    the 10,000 runs of `dlx compare --format json`.
    """
    try:
        return _json(value)
    except ValueError:  # a NaN or an infinity somewhere: written again, as null
        return _json(_finite(value))


def _json(value: Any) -> str:
    if isinstance(value, (list, tuple)) and value:
        lines = (json.dumps(item, allow_nan=False) for item in value)
        return "[\n  " + ",\n  ".join(lines) + "\n]"
    return json.dumps(value, indent=2, allow_nan=False)


def _finite(value: Any) -> Any:
    """`value` with every float that is NaN or infinite replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def training(result: Any) -> None:
    """A `TrainResult`: the run, its placement and time, its final metrics, where to see it."""
    replicas = f"{result.replicas} replica{'s' if result.replicas > 1 else ''}"
    workers = f", {result.workers} workers" if result.workers > 1 else ""
    if not result.run_id:
        typer.echo(
            f"worker {result.worker} of {result.workers} done in {result.seconds:.1f}s "
            f"({result.strategy}, {replicas}); the chief records the run"
        )
        if result.sharding is not None:
            typer.echo(f"  training data {result.sharding}")
        return
    typer.echo(
        f"run {result.run_id} finished in {result.seconds:.1f}s "
        f"({result.strategy}, {replicas}{workers})"
    )
    if result.data_cache is not None:
        typer.echo(f"  data streamed from its files, cache: {result.data_cache}")
    if result.sharding is not None:
        typer.echo(f"  training data {result.sharding}")
    if result.skipped:
        typer.echo(
            f"  skipped {len(result.skipped)} unreadable examples "
            f"(first: {relative_path(Path(result.skipped[0]))})"
        )
    if result.steps_per_execution:
        typer.echo(f"  steps per execution: {result.steps_per_execution}")
    if result.jit_compile:
        typer.echo(f"  XLA: {result.jit_compile}")
    for name, value in sorted(result.metrics.items()):
        typer.echo(f"  {name:<28} {value:.6g}")
    typer.echo(result.ui_hint)


def sweep_started(parent_run_id: str, storage: str, trials: int, how: str) -> None:
    """A sweep under way: its parent run, its study's storage, and how this process came to
    work it (started, resumed, joined, or taken over: the process that started it is gone)."""
    gone = ": the process that started it is gone" if how == "taken over" else ""
    typer.echo(f"sweep {parent_run_id} ({how}{gone}): {trials} trials, study in {storage}")


def sweep_trial(row: TrialRow) -> None:
    """One trial's end, as a line (one process's trials, as they end)."""
    value = "" if row.value is None else f" {row.value:.6g}"
    note = f" ({row.note})" if row.note else ""
    runs = f" run {row.run_ids[0]}" if row.run_ids else ""
    params = " ".join(f"{k}={_param(v)}" for k, v in row.params.items())
    typer.echo(f"trial {row.number} {row.state}{value} in {row.seconds:.1f}s:{runs} {params}{note}")


def _param(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def sweep_table(result: SweepResult, width: int | None = None) -> Any:
    """A sweep's trials as a rich renderable, by number: state, swept values (by their short
    names, with a legend of their paths under the table), metric, epochs; fitting `width`
    columns (`None`: as wide as it needs)."""
    from rich.console import Group
    from rich.text import Text

    from dlx.cli.tables import fitted_table
    from dlx.track.columns import distinct_numbers

    trials = sorted(result.trials, key=lambda r: r.number)
    names = _swept_names(trials, ["trial", "state", result.metric, "epochs"])
    header = ["trial", "state", *names.values(), result.metric, "epochs"]
    columns = [[str(r.number) for r in trials], [r.state for r in trials]]
    columns += _swept_columns(trials, names)
    columns += [distinct_numbers([r.value for r in trials]), [str(r.epochs) for r in trials]]
    best = result.best.number if result.best is not None else None
    table = fitted_table(
        f"sweep {result.parent_run_id}",
        header,
        [list(row) for row in zip(*columns, strict=True)],
        width=width,
        left=2,
        row_styles=["bold green" if r.number == best else None for r in trials],
    )
    legend = _legend(names)
    return Group(table, Text(legend)) if legend else table


def _swept_names(trials: list[TrialRow], taken: list[str]) -> dict[str, str]:
    """The swept params' paths, sorted, to their short names (`dlx.track.columns`)."""
    from dlx.track.columns import short_names

    return short_names(sorted({k for r in trials for k in r.params}), taken=taken)


def _swept_columns(trials: list[TrialRow], names: dict[str, str]) -> list[list[str]]:
    """A column of cells per swept param: floats with the digits that tell them apart."""
    from dlx.track.columns import distinct_numbers

    columns = []
    for path in names:
        values = [r.params.get(path) for r in trials]
        if all(isinstance(v, float) for v in values if v is not None):
            columns.append(distinct_numbers(values))
        else:
            columns.append(["" if v is None else str(v) for v in values])
    return columns


def _legend(names: dict[str, str]) -> str:
    """What the short names of a table's columns stand for: `name = dotted.path, ...`."""
    pairs = [f"{short} = {path}" for path, short in names.items() if short != path]
    return ", ".join(pairs)


class SweepLive:
    """A live table of a sweep's trials on the terminal (`sweep_table`), redrawn by `update`
    (`api.sweep`'s `on_progress`) while the sweep runs."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.live import Live

        self.live = Live(console=Console(highlight=False), auto_refresh=False)

    def __enter__(self) -> SweepLive:
        self.live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.live.stop()

    def update(self, result: SweepResult) -> None:
        self.live.update(sweep_table(result, self.live.console.width), refresh=True)


def sweep_result(result: SweepResult) -> None:
    """A `SweepResult`: every trial sorted best first, then the best trial."""
    from dlx.track.columns import distinct_numbers

    done = sorted(
        result.trials,
        key=lambda r: (
            r.value is None,
            -(r.value or 0.0) if result.goal == "max" else (r.value or 0.0),
        ),
    )
    names = _swept_names(done, ["trial", "state", result.metric, "run"])
    header = ["trial", "state", result.metric, *names.values(), "run"]
    columns = [[str(r.number) for r in done], [r.state for r in done]]
    columns.append(distinct_numbers([r.value for r in done]))
    columns += _swept_columns(done, names)
    columns.append([r.run_ids[0][:8] if r.run_ids else "" for r in done])
    rows = [list(row) for row in zip(*columns, strict=True)]
    title = f"sweep {result.parent_run_id}: {len(done)} trials"
    print_table(title, header, rows, legend=_legend(names))
    if result.best is not None:
        typer.echo(
            f"best: trial {result.best.number}, {result.metric} {result.best.value:.6g} "
            f"(run {result.best_run_id}); its spec: best.yaml in the sweep's run"
        )
    if result.ui_hint:
        typer.echo(result.ui_hint)


def model(description: ModelDescription, format: str) -> None:
    """`api.inspect`'s description: a table of layers and the parameter counts, or JSON."""
    summary = description.as_dict()
    if format == "json":
        typer.echo(strict_json(summary))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{summary['name']} ({summary['kind']})", title_justify="left")
    table.add_column("Layer")
    table.add_column("Class")
    table.add_column("Output shape")
    table.add_column("Params", justify="right")
    for layer in summary["layers"]:
        shape = json.dumps(layer["output_shape"]).replace("null", "None")
        table.add_row(layer["name"], layer["class_name"], shape, f"{layer['params']:,}")
    console = Console(highlight=False)
    console.print(table)
    console.print(
        f"Total params: {summary['params']:,}  "
        f"(trainable: {summary['trainable_params']:,}, "
        f"non-trainable: {summary['non_trainable_params']:,})"
    )


def data_report(report: Any, format: str) -> None:
    """`api.data`'s `DataReport`: a table of the splits, then sharing and throughput; or JSON."""
    if format == "json":
        typer.echo(strict_json(report.as_dict()))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{report.spec}: data", title_justify="left")
    for column in ("Split", "Files", "Examples", "Classes", "Batch"):
        table.add_column(column, justify="right" if column in ("Files", "Examples") else "left")
    for split in report.splits:
        batch = ", ".join(
            f"{name} {tuple(field['shape'])} {field['dtype']}"
            for name, field in split.batch.items()
        )
        table.add_row(
            split.name,
            "-" if split.files is None else f"{split.files:,}",
            f"{split.examples:,}",
            "-" if split.classes is None else str(split.classes),
            batch,
        )
    console = Console(highlight=False, soft_wrap=True)
    console.print(table)
    lines = [
        f"batch size {report.batch_size}"
        + ("" if report.cache is None else f", cache: {report.cache}"),
        f"backend: {report.backend}, {len(report.devices)} device"
        + ("s" if len(report.devices) > 1 else "")
        + f" ({', '.join(report.devices)}), {report.per_device_batch} examples per device "
        "a step",
        f"{report.workers} worker{'s' if report.workers > 1 else ''}: {report.sharding}",
        f"input pipeline: {report.input_examples_per_second:,.0f} examples/s",
        f"training:       {report.train_examples_per_second:,.0f} examples/s",
        f"{report.verdict}: {report.advice}",
    ]
    for line in lines:
        console.print(line, markup=False)


def run_listing(listing: Any, format: str) -> None:
    """`api.runs`'s listing as a table, CSV or JSON."""
    from dataclasses import asdict

    records = listing.runs
    if format == "json":
        typer.echo(strict_json([asdict(record) for record in records]))
        return
    keys = sorted({k for r in records for k in r.metrics}, key=_metric_order)
    header = ["run", "name", "status", "start", "duration", *keys]
    listed = {r.run_id for r in records}
    rows = [
        [
            r.run_id[:8],
            ("  " if r.parent_run_id in listed else "") + (r.run_name or ""),
            r.status,
            r.start_time,
            _duration(r.duration_s),
            *(_cell(r.metrics.get(k)) for k in keys),
        ]
        for r in records
    ]
    if format == "csv":
        _csv(header, rows)
    else:
        total = "" if listing.total in (None, len(records)) else f" of {listing.total}"
        print_table(f"{listing.experiment}: {len(records)}{total} runs", header, rows)
    if listing.total is None or listing.total > len(records):
        more = "more" if listing.total is None else f"{listing.total - len(records)} more"
        how = (
            "a larger --limit lists more"
            if listing.total is None
            else f"--limit {listing.total} lists them all"
        )
        stderr(f"the newest {len(records)} runs of {listing.experiment}; {more} not listed: {how}")


TABLE_RUNS = 50
"""The most runs `dlx compare` shows in a table unless `--limit` says otherwise: a screenful,
the best of a sorted comparison first (rich draws about a thousand rows a second)."""


def comparison(result: Any, format: str) -> None:
    """`api.compare`'s `Comparison` as a table, markdown, CSV or JSON, and on stderr how many
    more runs there are than it kept; with two runs, the tables and markdown add the metric
    deltas and the diff of their specs. The table names params by their short names, with a
    legend of their paths under it."""
    if result.total > len(result.runs):
        shown = len(result.runs)
        order = f"best {result.sort} first" if result.sort else "newest first"
        stderr(
            f"the first {shown} of {result.total} runs ({order}); --limit {result.total} "
            "shows them all, as --format csv, markdown and json do"
        )
    if format == "json":
        typer.echo(strict_json(result.records()))
        return
    header, rows = result.rows(short=format == "table")
    if format == "csv":
        _csv(header, rows)
    elif format == "markdown":
        typer.echo(markdown_table(header, rows, _best_cells(result)))
        if result.deltas is not None:
            typer.echo("\n" + markdown_table(*_delta_rows(result.deltas, *result.runs), set()))
            if result.spec_diff:
                typer.echo(f"\n```diff\n{result.spec_diff}```")
    else:
        legend = _legend({path: short for short, path in result.param_names().items()})
        print_table(None, header, rows, _best_cells(result), legend=legend)
        if result.deltas is not None:
            print_table("metric deltas", *_delta_rows(result.deltas, *result.runs))
            if result.spec_diff:
                typer.echo(result.spec_diff)


def reproduction(done: Any) -> None:
    """A `Reproduction`: every final metric of both runs, the ones that differ in red."""
    rows = [
        [
            name,
            _cell(before),
            _cell(after),
            "" if None in (before, after) else f"{after - before:+.3g}",
        ]
        for name, before, after in done.rows
    ]
    mismatches = set(done.mismatches)
    highlight = {(i, 3) for i, row in enumerate(rows) if row[0] in mismatches}
    header = ["metric", done.original_run_id[:8], done.result.run_id[:8], "delta"]
    print_table("original vs reproduction", header, rows, highlight, style="bold red")
    if done.data_changed:
        typer.echo(f"note: {done.data_changed}", err=True)


def scores(scores: Any, output: Path | None) -> None:
    """`api.score`'s `Scores`: how many examples, the error's mean and p95, and the files."""
    summary = scores.summary()
    typer.echo(f"run {scores.run_id}: {summary['count']} examples scored ({scores.split} data)")
    labels = {"mean": "mean error", "p95": "p95 error", "threshold": "run's p95 error"}
    for name, label in labels.items():
        if summary[name] is not None:
            typer.echo(f"  {label:<16} {summary[name]:.6g}")
    if scores.over_threshold is not None:
        typer.echo(f"  {'over threshold':<16} {scores.over_threshold}")
    for label, path in (("errors", output), ("embeddings", scores.embeddings)):
        if path is not None:
            typer.echo(f"{label}: {path}")


def export(done: Any) -> None:
    """`api.export`'s `Export`: per exported model, its size, its difference from the Keras
    model, its metric on the data where it has one (a LiteRT model's, quantized or not), and
    its latency at batch 1 and 32 (the Keras model's first)."""
    metrics = list(dict.fromkeys(c.metric[0] for c in done.checks if c.metric is not None))
    keras_latency = [f"{done.keras_latency_ms[b]:.3f}" for b in (1, 32)]
    rows = [["keras", "", "", "", "", *([""] * len(metrics)), *keras_latency]]
    failed = {id(check) for check in done.failed}
    highlight = set()
    for check in done.checks:
        if id(check) in failed:
            highlight.add((len(rows), 3))
        agreement = check.argmax_agreement
        measured = dict([check.metric]) if check.metric is not None else {}
        rows.append(
            [
                check.label,
                str(relative_path(check.path)),
                f"{check.size_bytes / 1e6:.3f}",
                f"{check.max_abs_diff:.3g}",
                "" if agreement is None else f"{agreement:.4f}",
                *(f"{measured[m]:.4f}" if m in measured else "" for m in metrics),
                *(f"{check.latency_ms[b]:.3f}" for b in (1, 32)),
            ]
        )
    header = ["export", "file", "MB", "max abs diff", "argmax agreement", *metrics]
    header += ["ms b=1", "ms b=32"]
    title = f"run {done.run_id}: {done.examples} examples, tolerance {done.tolerance:g}"
    print_table(title, header, rows, highlight, style="bold red")


def write_errors_csv(path: Path, errors: Any) -> None:
    """Write reconstruction errors to a CSV file, one row per example: `index,error`."""
    rows = "".join(f"{i},{e:.9g}\n" for i, e in enumerate(errors.tolist()))
    path.write_text("index,error\n" + rows, encoding="utf-8")


def _metric_order(name: str) -> tuple[int, str]:
    return (0 if name.startswith("val_") else 1, name)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    minutes, seconds = divmod(round(seconds), 60)
    return f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


def _cell(value: float | None) -> str:
    return "" if value is None else f"{value:.4g}"


def _best_cells(result: Any) -> set[tuple[int, int]]:
    """(row, column) of each metric's best value of all the runs compared, where it is shown."""
    if result.total < 2:
        return set()
    offset = 3 + len(result.params)
    rows = {run.info.run_id: row for row, run in enumerate(result.runs)}
    return {
        (rows[run_id], offset + column)
        for column, metric in enumerate(result.metrics)
        for run_id in result.best.get(metric, ())
        if run_id in rows
    }


def _delta_rows(
    deltas: list[tuple[str, float | None, float | None]], first: Any, second: Any
) -> tuple[list, list]:
    rows = []
    for name, before, after in deltas:
        delta = "" if before is None or after is None else f"{after - before:+.4g}"
        rows.append([name, _cell(before), _cell(after), delta])
    return ["metric", first.info.run_id[:8], second.info.run_id[:8], "delta"], rows


def print_table(
    title: str | None,
    header: list[str],
    rows: list[list[str]],
    highlight: set[tuple[int, int]] | None = None,
    style: str = "bold green",
    legend: str = "",
) -> None:
    """Print a table that fits the terminal (`dlx.cli.tables`), the cells in `highlight`
    (row, column) in `style`, and under it its `legend`."""
    from rich.console import Console
    from rich.text import Text

    from dlx.cli.tables import fitted_table

    cells = [
        [
            Text(cell, style=style) if highlight and (r, c) in highlight else Text(cell)
            for c, cell in enumerate(row)
        ]
        for r, row in enumerate(rows)
    ]
    # A terminal's width is fitted, or the one COLUMNS gives; off a terminal without it (CI
    # logs, pipes) the table prints whole.
    fits = sys.stdout.isatty() or os.environ.get("COLUMNS", "").isdigit()
    console = Console(highlight=False, width=None if fits else 100_000)
    console.print(fitted_table(title, header, cells, width=console.width, left=3))
    if legend:
        console.print(Text(legend))


def markdown_table(header: list[str], rows: list[list[str]], bold: set[tuple[int, int]]) -> str:
    def cell(text: str, r: int, c: int) -> str:
        text = text.replace("|", "\\|")
        return f"**{text}**" if (r, c) in bold and text else text

    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for r, row in enumerate(rows):
        lines.append("| " + " | ".join(cell(t, r, c) for c, t in enumerate(row)) + " |")
    return "\n".join(lines)


def _csv(header: list[str], rows: list[list[str]]) -> None:
    import csv

    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
