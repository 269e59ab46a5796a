"""`dlx baseline`: a run's baseline file written, and a run checked against a baseline
(`dlx.api.write_baseline`, `dlx.api.check_baseline`), shown as a table, markdown or JSON."""

from __future__ import annotations

import math
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from dlx.cli import render
from dlx.cli.exiting import call_api
from dlx.cli.options import TrackingUriOption
from dlx.errors import UsageError, relative_path

if TYPE_CHECKING:
    from dlx.track.baseline import BaselineCheck, MetricCheck

app = typer.Typer(
    name="baseline",
    help="Compare runs with a baseline: write a run's baseline file, check a run against one.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)

Reference = Annotated[
    str,
    typer.Argument(
        metavar="RUN|SPEC",
        help="A run id (or unique prefix); or a spec, for its newest FINISHED run.",
        show_default=False,
    ),
]


class CheckFormat(str, Enum):
    table = "table"
    markdown = "markdown"
    json = "json"


_VERDICTS = {
    "better": "✅ better",
    "same": "✅ same",
    "within tolerance": "☑️ within tolerance",
    "worse": "❌ worse",
    "missing": "❌ missing",
}
"""A verdict as markdown shows it; an ungated metric's `worse` is not a failure (`_mark`)."""

_MARKDOWN_CHANGES = 20
"""The most changes a markdown report lists: a pull-request comment stays small."""


@app.command()
def write(
    reference: Reference,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="The file; default: the spec's baseline.file, else <spec>.baseline.json.",
            show_default=False,
        ),
    ] = None,
    tracking_uri: TrackingUriOption = None,
) -> None:
    """Write a run's baseline file: final metrics, histories, and what produced them."""
    from dlx import api

    done = call_api(lambda: api.write_baseline(reference, output, tracking_uri=tracking_uri))
    record = done.record
    typer.echo(
        f"baseline of run {record.run_id[:8]} ({record.name}, {len(record.metrics)} metrics) "
        f"written to {relative_path(done.path)}"
    )


@app.command()
def check(
    reference: Reference,
    against: Annotated[
        str | None,
        typer.Option(
            "--against",
            help="A baseline file, a run id, or an MLflow filter (its newest FINISHED match, "
            "e.g. \"tags.mlflow.source.git.branch = 'main'\"); default: the spec's baseline file.",
            show_default=False,
        ),
    ] = None,
    tolerance: Annotated[
        list[str] | None,
        typer.Option(
            "--tolerance",
            "-t",
            metavar="METRIC=TOLERANCE",
            help="Gate a metric: how much worse it may be, e.g. val_accuracy=-0.005 or "
            "val_loss=+2%. Added to the spec's baseline.gate.",
        ),
    ] = None,
    format: Annotated[CheckFormat, typer.Option("--format", "-f")] = CheckFormat.table,
    plot: Annotated[
        Path | None,
        typer.Option(
            "--plot", help="Write each gated metric's curves, baseline and now, to a PNG."
        ),
    ] = None,
    tracking_uri: TrackingUriOption = None,
) -> None:
    """Check a run against a baseline; exit 3 when a gated metric is worse beyond tolerance."""
    from dlx import api

    show = {"table": report_table, "markdown": _echo_markdown, "json": _echo_json}[format.value]
    call_api(
        lambda: api.check_baseline(
            reference,
            against,
            tolerances=_tolerances(tolerance or []),
            plot=plot,
            tracking_uri=tracking_uri,
        ),
        show,
    )
    if plot is not None and format is not CheckFormat.json:
        typer.echo(f"curves: {plot}", err=True)


def _tolerances(given: list[str]) -> dict[str, str]:
    tolerances = {}
    for item in given:
        metric, equals, value = item.partition("=")
        if not equals or not metric.strip() or not value.strip():
            raise UsageError(
                f"--tolerance {item}: expected METRIC=TOLERANCE, e.g. val_accuracy=-0.005"
            )
        tolerances[metric.strip()] = value.strip()
    return tolerances


def report_table(result: BaselineCheck) -> None:
    """The check as a terminal shows it: what differs, then a table of the metrics, the
    failing ones in red, then the verdict."""
    for line in _headline(result):
        typer.echo(line)
    if result.changes:
        rows = [[c.what, c.name, _text(c.baseline), _text(c.now)] for c in result.changes]
        render.print_table("what changed", ["", "name", "baseline", "now"], rows)
    header, rows = _metric_rows(result, markdown=False)
    failing = {
        (i, column)
        for i, check in enumerate(result.metrics)
        if result.fails(check)
        for column in range(len(header))
    }
    render.print_table("metrics", header, rows, failing, style="bold red")
    typer.echo(_verdict_line(result))


def markdown(result: BaselineCheck) -> str:
    """The check as GitHub-flavoured markdown, for a pull request's comment or job summary:
    the verdict, what differs (params that changed only), and a table of the metrics."""
    lines = [f"### {'✅' if result.passed else '❌'} dlx baseline check: {_verdict_line(result)}"]
    headline = _headline(result)
    lines += ["", *(f"> {line}" for line in headline), *([""] if headline else [])]
    lines.append(
        f"Run `{result.now.run_id[:8]}` ({_git(result.now.git)}) against "
        f"{_code(result.against)} (run `{result.baseline.run_id[:8]}`, "
        f"{_git(result.baseline.git)})."
    )
    if result.changes:
        rows = [
            [f"{c.what} `{c.name}`", _code(_text(c.baseline)), _code(_text(c.now))]
            for c in result.changes[:_MARKDOWN_CHANGES]
        ]
        lines += ["", "<details><summary>What changed</summary>", ""]
        lines.append(render.markdown_table(["", "baseline", "now"], rows, set()))
        left = len(result.changes) - _MARKDOWN_CHANGES
        if left > 0:
            lines.append(f"\n… and {left} more (`dlx baseline check --format json` lists all).")
        lines += ["", "</details>"]
    header, rows = _metric_rows(result, markdown=True)
    lines += ["", render.markdown_table(header, rows, set())]
    lines.append("\n↑ higher is better, ↓ lower is better; Δ: now − baseline.")
    return "\n".join(lines) + "\n"


def _echo_markdown(result: BaselineCheck) -> None:
    typer.echo(markdown(result), nl=False)


def _echo_json(result: BaselineCheck) -> None:
    typer.echo(render.strict_json(as_dict(result)))


def as_dict(result: BaselineCheck) -> dict:
    """The check as JSON: the verdict, both runs (histories and params left out), the
    changes and every metric."""
    from dataclasses import asdict

    def run(record: object) -> dict:
        data = asdict(record)  # type: ignore[call-overload]
        return {k: v for k, v in data.items() if k not in ("history", "params")}

    return {
        "passed": result.passed,
        "identical": result.identical,
        "against": result.against,
        "baseline": run(result.baseline),
        "now": run(result.now),
        "changes": [asdict(change) for change in result.changes],
        "metrics": [
            {
                "metric": m.metric,
                "baseline": m.baseline,
                "now": m.now,
                "delta": m.delta,
                "relative": m.relative,
                "better": "higher" if m.higher_is_better else "lower",
                "tolerance": m.tolerance,
                "allowed": m.allowed,
                "verdict": m.verdict,
                "failed": result.fails(m),
            }
            for m in result.metrics
        ],
    }


def _headline(result: BaselineCheck) -> list[str]:
    """What a reader must know before the numbers: another spec or other data, or an
    identical run (where any difference is a reproducibility failure)."""
    lines = []
    if result.baseline.run_id == result.now.run_id:
        lines.append(f"The baseline is this run itself ({result.now.run_id[:8]}).")
    kinds = {c.what: c for c in result.changes}
    if "spec" in kinds:
        c = kinds["spec"]
        lines.append(f"The baseline is of another spec: {c.baseline} (now {c.now}).")
    if "data" in kinds:
        lines.append("The baseline was trained on other data (its fingerprint differs).")
    if result.identical:
        lines.append(
            "Same spec, data, seed, versions and processor, both deterministic: every metric "
            "must be exactly equal."
        )
    return lines


def _verdict_line(result: BaselineCheck) -> str:
    if result.not_reproduced:
        names = ", ".join(m.metric for m in result.not_reproduced)
        return f"did not reproduce ({names} differ)"
    if result.worse:
        names = ", ".join(m.metric for m in result.worse)
        return f"worse than the baseline: {names}"
    gated = sum(m.gated for m in result.metrics)
    return f"passed ({gated} gated metric{'s' * (gated != 1)} within tolerance)"


def _metric_rows(result: BaselineCheck, *, markdown: bool) -> tuple[list[str], list[list[str]]]:
    header = ["metric", "baseline", "now", "Δ", "Δ %", "gate", "verdict"]
    rows = []
    for m in result.metrics:
        arrow = "↑" if m.higher_is_better else "↓"
        name = f"`{m.metric}` {arrow}" if markdown else f"{m.metric} {arrow}"
        relative = "" if m.relative is None else f"{m.relative * 100:+.2f} %"
        verdict = _mark(result, m) if markdown else _mark(result, m).lstrip("✅☑️❌ ")
        rows.append(
            [
                name,
                _number(m.baseline),
                _number(m.now),
                "" if m.delta is None else f"{m.delta:+.4g}",
                relative,
                m.tolerance or "",
                verdict,
            ]
        )
    return header, rows


def _mark(result: BaselineCheck, check: MetricCheck) -> str:
    if result.differs(check):
        return "❌ not reproduced"
    if check.verdict in ("worse", "missing") and not check.gated:
        return f"{check.verdict} (not gated)"
    return _VERDICTS[check.verdict]


def _number(value: float | None) -> str:
    if value is None:
        return ""
    return "NaN" if math.isnan(value) else f"{value:.4g}"


def _text(value: str | None) -> str:
    return "(none)" if value is None else value


def _code(text: str) -> str:
    return f"`{text.replace('`', '')}`"


def _git(git: dict[str, str]) -> str:
    if "commit" not in git:
        return "no git commit recorded"
    where = f"commit `{git['commit'][:8]}`"
    if "branch" in git:
        where += f" on `{git['branch']}`"
    return where + (", work tree dirty" if git.get("dirty") == "true" else "")
