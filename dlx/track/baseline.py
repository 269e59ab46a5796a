"""A run checked against a baseline: did this change make the model better or worse?

A baseline is a small JSON file written from a run (`RunRecord`): its final metrics, each
metric's per-epoch history, and what produced it (the resolved spec's digest and params, the
data fingerprint, the seed, the versions, the git commit). It is committed next to the spec or
kept as a CI artifact; a run's own record can also stand for it (a run id, or an MLflow filter
on a shared server). `check` puts a run beside it metric by metric, with a verdict for each,
and a gate: per-metric tolerances (the spec's `baseline.gate`, or given on the command line),
each metric's direction known from its name or declared. Pure data: `dlx.cli` renders it.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from dlx.errors import DlxError, ExpectationError, UsageError, relative_path
from dlx.spec import LoadedSpec
from dlx.spec.baseline import TOLERANCE
from dlx.track.compare import higher_is_better
from dlx.track.read import Experiment, Store, open_store
from dlx.track.tags import (
    DATA_FINGERPRINT,
    GIT_BRANCH,
    GIT_COMMIT,
    GIT_DIRTY,
    MACHINE,
    RUN_NAME,
    SEED,
    SPEC_HASH,
    VERSION_PREFIX,
)

FORMAT = 1
"""The version of the baseline file's layout (`"dlx_baseline"` in it)."""

_FILTER = re.compile(r"\s(=|!=|<>|<=|>=|<|>|LIKE|ILIKE|IN)\s", re.IGNORECASE)
"""What tells an MLflow filter from a run id: a comparison between spaces."""


@dataclass
class RunRecord:
    """A run's outcome and what produced it: what a baseline file holds.

    Attributes:
        run_id, name, experiment, status, started: which run (`name`: the spec's).
        spec_hash: SHA-256 of the spec as run; `params`: its flattened params.
        data_fingerprint: the training data's digest; `seed`; `deterministic`:
            `runtime.deterministic` was true.
        versions: library -> version (dlx, keras, tensorflow or jax, mlflow, python).
        machine: the processor that computed it (`dlx.machine`).
        git: `commit`, `branch` and `dirty` where recorded.
        metrics: the final metrics (NaN as None in the file).
        history: metric -> its value at each epoch, the first epoch first.
    """

    run_id: str
    name: str
    experiment: str
    status: str
    started: str
    spec_hash: str | None
    params: dict[str, str]
    data_fingerprint: str | None
    seed: str | None
    deterministic: bool
    versions: dict[str, str]
    git: dict[str, str]
    metrics: dict[str, float]
    machine: str | None = None
    history: dict[str, list[float]] = field(default_factory=dict)

    @classmethod
    def of(cls, store: Store, run: Any, experiment: str = "") -> RunRecord:
        """The record of a run read from `store`, its histories included."""
        tags, params = run.data.tags, dict(run.data.params)
        git = {
            key: tags[tag]
            for key, tag in (("commit", GIT_COMMIT), ("branch", GIT_BRANCH), ("dirty", GIT_DIRTY))
            if tag in tags
        }
        metrics = dict(run.data.metrics)
        return cls(
            run_id=run.info.run_id,
            name=tags.get(RUN_NAME) or run.info.run_name or "",
            experiment=experiment,
            status=run.info.status,
            started=datetime.fromtimestamp(run.info.start_time / 1000).isoformat("T", "seconds"),
            spec_hash=tags.get(SPEC_HASH),
            params=params,
            data_fingerprint=tags.get(DATA_FINGERPRINT),
            seed=tags.get(SEED),
            deterministic=params.get("runtime.deterministic") == "true",
            versions={
                key[len(VERSION_PREFIX) :]: value
                for key, value in sorted(tags.items())
                if key.startswith(VERSION_PREFIX)
            },
            git=git,
            metrics=metrics,
            machine=tags.get(MACHINE),
            history={
                metric: [value for _, value in store.history(run.info.run_id, metric)]
                for metric in sorted(metrics)
            },
        )

    def to_json(self) -> str:
        """The file's text: who and what first, then the metrics, what produced them, the
        params and the histories (each on one line); NaN written as null."""
        data = asdict(self)
        data["metrics"] = {k: _finite(v) for k, v in self.metrics.items()}
        data["history"] = {k: [_finite(v) for v in vs] for k, vs in self.history.items()}
        order = ["run_id", "name", "experiment", "status", "started", "metrics", "spec_hash"]
        order += ["data_fingerprint", "seed", "deterministic", "machine", "versions", "git"]
        ordered: dict[str, Any] = {"dlx_baseline": FORMAT}
        for key in [*order, "params", "history"]:
            value = data.pop(key)
            ordered[key] = dict(sorted(value.items())) if isinstance(value, dict) else value
        ordered.update(data)
        text = json.dumps(ordered, indent=2, allow_nan=False)
        # A list of numbers on one line: a changed epoch is a changed line in a diff.
        return re.sub(r"\[\s+([^\[\]{}\"]*?)\s+\]", _one_line, text) + "\n"

    @classmethod
    def read(cls, path: Path) -> RunRecord:
        """A baseline file, checked.

        Raises:
            UsageError: the file is missing, is not JSON (its line and column named), or is
                not a dlx baseline of a layout this dlx reads.
        """
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise UsageError(
                f"no baseline file {path}: write one from a run with `dlx baseline write RUN "
                f"-o {path}`"
            ) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"the baseline file {path} cannot be read: {exc}") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UsageError(
                f"{path}:{exc.lineno}:{exc.colno}: not a baseline file: {exc.msg}"
            ) from None
        if not isinstance(data, dict) or data.get("dlx_baseline") != FORMAT:
            raise UsageError(
                f"{path} is not a dlx baseline file of layout {FORMAT} (its `dlx_baseline` "
                "key): write it again with `dlx baseline write`"
            )
        data.pop("dlx_baseline")
        try:
            record = cls(**data)
            record.metrics = {
                k: math.nan if v is None else float(v) for k, v in record.metrics.items()
            }
            record.history = {
                k: [math.nan if v is None else float(v) for v in vs]
                for k, vs in record.history.items()
            }
        except (TypeError, ValueError, AttributeError) as exc:
            raise UsageError(f"{path} is not a dlx baseline file: {exc}") from None
        return record


@dataclass
class MetricCheck:
    """One metric, baseline beside now.

    Attributes:
        verdict: `better`, `same`, `within tolerance`, `worse`, or `missing` (on one side).
        tolerance: the gate's tolerance as written; None: the metric is not gated.
        allowed: how much worse it may be, in the metric's units (0 when not gated).
    """

    metric: str
    baseline: float | None
    now: float | None
    higher_is_better: bool
    verdict: str
    tolerance: str | None = None
    allowed: float = 0.0

    @property
    def gated(self) -> bool:
        return self.tolerance is not None

    @property
    def failed(self) -> bool:
        return self.gated and self.verdict in ("worse", "missing")

    @property
    def delta(self) -> float | None:
        if self.baseline is None or self.now is None:
            return None
        return self.now - self.baseline

    @property
    def relative(self) -> float | None:
        """The delta as a fraction of the baseline's value; None when that is 0."""
        delta = self.delta
        if delta is None or not self.baseline:
            return None
        return delta / abs(self.baseline)


@dataclass
class Change:
    """Something that differs between the baseline's run and this one."""

    what: str
    """`spec`, `data`, `param`, `seed`, `version`, `machine` or `git`."""
    name: str
    baseline: str | None
    now: str | None


@dataclass
class BaselineCheck:
    """A run beside its baseline (`dlx baseline check`).

    Attributes:
        baseline, now: the two records; `against`: where the baseline came from (a file, a
            run id, or a filter).
        changes: what differs between them, the spec and the data first.
        metrics: every final metric either has, the gated ones first.
        identical: the same spec as run, data, seed, versions and processor, both
            deterministic: any difference in a metric is then a reproducibility failure.
    """

    baseline: RunRecord
    now: RunRecord
    against: str
    changes: list[Change]
    metrics: list[MetricCheck]
    identical: bool

    @property
    def worse(self) -> list[MetricCheck]:
        return [m for m in self.metrics if m.failed]

    @property
    def not_reproduced(self) -> list[MetricCheck]:
        return [m for m in self.metrics if self.differs(m)]

    def differs(self, check: MetricCheck) -> bool:
        """Whether the metric differs although the runs are identical: not reproduced."""
        return self.identical and check.verdict != "same"

    def fails(self, check: MetricCheck) -> bool:
        """Whether the metric fails the check: gated and worse, or not reproduced."""
        return check.failed or self.differs(check)

    @property
    def passed(self) -> bool:
        return not self.worse and not self.not_reproduced


@dataclass(frozen=True)
class Tolerance:
    """A gate's tolerance: how much worse a metric may end than its baseline."""

    text: str
    amount: float
    relative: bool
    sign: int
    """-1 or +1 when written with a sign (`-0.005`, `+2%`), else 0."""

    @classmethod
    def parse(cls, value: float | str) -> Tolerance:
        text = str(value).strip()
        relative = text.endswith("%")
        number = float(text.rstrip("%"))
        sign = -1 if number < 0 else (1 if text.startswith("+") else 0)
        return cls(text, abs(number), relative, sign)

    def allowed(self, baseline: float) -> float:
        return self.amount * abs(baseline) / 100 if self.relative else self.amount


def run_of(reference: str, tracking_uri: str | None) -> tuple[Store, Any, LoadedSpec | None]:
    """The run a reference names: a run id or unique prefix; or a spec file (`.yaml`), for the
    newest FINISHED run of its experiment in its store. With the spec when one was given."""
    from dlx.spec import load_spec

    if reference.endswith((".yaml", ".yml")):
        loaded = load_spec(reference)
        tracking = loaded.spec.tracking
        store = open_store(tracking_uri or tracking.uri)
        experiment = store.experiment(tracking.experiment or loaded.name)
        listed = store.runs(experiment, params="none", tags=())
        finished = next((r for r in listed if r.info.status == "FINISHED"), None)
        if finished is None:
            raise DlxError(
                f"no FINISHED run of {reference} in {store.uri}: train it first (`dlx train "
                f"{reference}`)"
            )
        return store, store.get_run(finished.info.run_id), loaded
    store = open_store(tracking_uri)
    (run,) = store.find([reference])
    return store, _finished(run), None


def _finished(run: Any) -> Any:
    """The run, when it FINISHED: only then do its final metrics stand for it."""
    if run.info.status != "FINISHED":
        raise UsageError(
            f"the run {run.info.run_id} is {run.info.status}: only a FINISHED run's final "
            "metrics stand for it"
        )
    return run


def record_of(store: Store, run: Any) -> RunRecord:
    names = {e.experiment_id: e.name for e in store.experiments()}
    return RunRecord.of(store, run, names.get(str(run.info.experiment_id), ""))


def default_file(store: Store, run: Any, loaded: LoadedSpec | None) -> Path:
    """Where a spec's baseline lies: its `baseline.file` (relative to the spec), else
    `<spec's stem>.baseline.json` beside it."""
    if loaded is None:
        loaded = store.logged_spec(run)
    section = loaded.spec.baseline
    if section is not None and section.file:
        return loaded.base_dir / section.file
    path = loaded.document.path
    return path.with_name(f"{path.stem}.baseline.json")


@dataclass
class WrittenBaseline:
    """A baseline file written (`dlx baseline write`): the run's record and where it went."""

    record: RunRecord
    path: Path


def write(
    reference: str, output: str | Path | None = None, *, tracking_uri: str | None = None
) -> WrittenBaseline:
    """Write a run's baseline file (`dlx.api.write_baseline` documents the arguments)."""
    store, run, loaded = run_of(reference, tracking_uri)
    record = record_of(store, run)
    path = Path(output) if output is not None else default_file(store, run, loaded)
    text = record.to_json()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written whole, then moved into place: a baseline is never left half-written.
        partial = path.with_name(f".{path.name}.{os.getpid()}.partial")  # one per writer
        partial.write_text(text, encoding="utf-8")
        partial.replace(path)
    except OSError as exc:
        raise UsageError(f"cannot write the baseline file {path}: {exc.strerror or exc}") from None
    return WrittenBaseline(record, path)


def check(
    reference: str,
    against: str | None = None,
    *,
    tolerances: dict[str, str] | None = None,
    plot: str | Path | None = None,
    tracking_uri: str | None = None,
) -> BaselineCheck:
    """A run beside its baseline (`dlx.api.check_baseline` documents the arguments).

    Raises:
        ExpectationError: a gated metric is worse than its tolerance allows, or an identical
            deterministic run did not reproduce; its `result` is the `BaselineCheck`.
    """
    store, run, loaded = run_of(reference, tracking_uri)
    if loaded is None:
        loaded = store.logged_spec(run)
    now = record_of(store, run)
    baseline, where = _baseline(store, run, loaded, against)
    gate = _gate(loaded, tolerances or {})
    result = BaselineCheck(
        baseline=baseline,
        now=now,
        against=where,
        changes=changes(baseline, now),
        metrics=_metric_checks(baseline, now, gate),
        identical=_identical(baseline, now),
    )
    if plot is not None:
        curves_figure(result).savefig(plot, dpi=100)
    failures = [
        f"{m.metric} is worse than the baseline's beyond its tolerance ({m.tolerance}): "
        f"{_number(m.baseline)} -> {_number(m.now)}"
        for m in result.worse
    ]
    failures += [
        f"{m.metric} differs from the baseline's ({_number(m.baseline)} -> {_number(m.now)}) "
        "although the spec, data, seed, versions and processor are the same and "
        "runtime.deterministic is "
        "true: the run did not reproduce"
        for m in result.not_reproduced
    ]
    if failures:
        raise ExpectationError("\n".join(failures), result=result, failures=failures)
    return result


def _baseline(
    store: Store, run: Any, loaded: LoadedSpec, against: str | None
) -> tuple[RunRecord, str]:
    """The baseline and where it came from: a file, a run id or prefix, or an MLflow filter
    (the newest FINISHED run of the experiment that matches it, other than `run`), both in
    `run`'s store."""
    if against is None:
        path = default_file(store, run, loaded)
        return RunRecord.read(path), relative_path(path)
    if against.endswith(".json") or Path(against).is_file():
        return RunRecord.read(Path(against)), against
    if _FILTER.search(f" {against} "):
        filtered = open_store(store.uri, filter=against)
        experiment = Experiment(str(run.info.experiment_id), "")
        finished = f"{against} and attributes.status = 'FINISHED'"
        matches = [
            r
            for r in filtered.runs(experiment, filter=finished, limit=2, params="none", tags=())
            if r.info.run_id != run.info.run_id
        ]
        if not matches:
            raise UsageError(
                f"--against: no FINISHED run of this experiment other than {run.info.run_id[:8]} "
                f"matches the filter {against!r} in {store.uri}"
            )
        (found,) = filtered.find([matches[0].info.run_id])
        return record_of(filtered, found), f"run {found.info.run_id[:8]} ({against})"
    (found,) = store.find([against])
    return record_of(store, _finished(found)), f"run {found.info.run_id[:8]}"


def _gate(loaded: LoadedSpec, given: dict[str, str]) -> dict[str, tuple[Tolerance, bool]]:
    """Metric -> (tolerance, higher is better): the spec's `baseline.gate`, then the command
    line's. A tolerance whose sign says the metric's better side is a mistake, said where."""
    gate: dict[str, tuple[Tolerance, bool]] = {}
    section = loaded.spec.baseline
    for metric, rule in (section.gate if section else {}).items():
        higher = rule.better == "higher" if rule.better else higher_is_better(metric)
        tolerance = Tolerance.parse(rule.tolerance)
        if problem := _wrong_sign(metric, tolerance, higher):
            raise loaded.error(("baseline", "gate", metric), problem)
        gate[metric] = tolerance, higher
    for metric, text in given.items():
        higher = gate[metric][1] if metric in gate else higher_is_better(metric)
        if not re.fullmatch(TOLERANCE, text):  # the spec's notation, no `nan` nor `inf`
            raise UsageError(
                f"--tolerance {metric}={text}: expected a number (-0.005) or a percentage of "
                "the baseline's value (+2%)"
            )
        tolerance = Tolerance.parse(text)
        if problem := _wrong_sign(metric, tolerance, higher):
            raise UsageError(f"--tolerance {metric}={text}: {problem}")
        gate[metric] = tolerance, higher
    return gate


def _wrong_sign(metric: str, tolerance: Tolerance, higher: bool) -> str | None:
    worse = -1 if higher else 1
    if tolerance.sign in (0, worse):
        return None
    side, sign = ("higher", "-") if higher else ("lower", "+")
    return (
        f"{metric} is better {side}, so a worse value is {'lower' if higher else 'higher'}: "
        f"write its tolerance as {sign}{tolerance.text.lstrip('+-')} (or, for a metric better "
        f"{'lower' if higher else 'higher'}, {{tolerance: ..., better: "
        f"{'lower' if higher else 'higher'}}})"
    )


def _metric_checks(
    baseline: RunRecord, now: RunRecord, gate: dict[str, tuple[Tolerance, bool]]
) -> list[MetricCheck]:
    names = sorted(set(baseline.metrics) | set(now.metrics) | set(gate))
    checks = []
    for metric in names:
        tolerance, higher = gate.get(metric, (None, higher_is_better(metric)))
        before, after = baseline.metrics.get(metric), now.metrics.get(metric)
        allowed = tolerance.allowed(before) if tolerance and before is not None else 0.0
        checks.append(
            MetricCheck(
                metric=metric,
                baseline=before,
                now=after,
                higher_is_better=higher,
                verdict=_verdict(before, after, higher, allowed if tolerance else None),
                tolerance=tolerance.text if tolerance else None,
                allowed=allowed,
            )
        )
    checks.sort(key=lambda c: not c.gated)
    return checks


def _verdict(before: float | None, after: float | None, higher: bool, allowed: float | None) -> str:
    if before is None or after is None:
        return "missing"
    if after == before or (math.isnan(after) and math.isnan(before)):
        return "same"
    if math.isnan(after) or math.isnan(before):
        return "worse" if math.isnan(after) else "better"
    worse_by = before - after if higher else after - before
    if worse_by < 0:
        return "better"
    return "within tolerance" if allowed is not None and worse_by <= allowed else "worse"


def changes(baseline: RunRecord, now: RunRecord) -> list[Change]:
    """What differs between two records: the spec and the data first, then params (the
    `baseline` section's aside), seed, versions, machine and git."""
    found = []
    if baseline.name != now.name:
        found.append(Change("spec", "name", baseline.name, now.name))
    if baseline.data_fingerprint != now.data_fingerprint:
        found.append(Change("data", "fingerprint", baseline.data_fingerprint, now.data_fingerprint))
    for key in sorted(set(baseline.params) | set(now.params)):
        if key.startswith("baseline.") or baseline.params.get(key) == now.params.get(key):
            continue
        found.append(Change("param", key, baseline.params.get(key), now.params.get(key)))
    if baseline.seed != now.seed:
        found.append(Change("seed", "seed", baseline.seed, now.seed))
    for name in sorted(set(baseline.versions) | set(now.versions)):
        if baseline.versions.get(name) != now.versions.get(name):
            found.append(
                Change("version", name, baseline.versions.get(name), now.versions.get(name))
            )
    if baseline.machine != now.machine:
        found.append(Change("machine", "processor", baseline.machine, now.machine))
    for key in ("commit", "branch", "dirty"):
        if baseline.git.get(key) != now.git.get(key):
            found.append(Change("git", key, baseline.git.get(key), now.git.get(key)))
    return found


def _identical(baseline: RunRecord, now: RunRecord) -> bool:
    """Whether nothing that decides a deterministic run's numbers differs: the spec as run
    (its digest), the data, the seed, the versions and the kind of processor, both runs
    deterministic. The commit is not among them: a change elsewhere in the repository does not
    change the numbers."""
    return (
        baseline.deterministic
        and now.deterministic
        and baseline.spec_hash is not None
        and baseline.spec_hash == now.spec_hash
        and baseline.data_fingerprint == now.data_fingerprint
        and baseline.seed == now.seed
        and baseline.versions == now.versions
        and baseline.machine == now.machine
    )


def curves_figure(result: BaselineCheck) -> Any:
    """Each gated metric's curve (every metric's with a history, when none is gated),
    baseline against now, by epoch counted from 1."""
    from dlx.track.plots import epoch_panels

    metrics = [m.metric for m in result.metrics if m.gated] or [
        m.metric for m in result.metrics if len(result.now.history.get(m.metric, [])) > 1
    ]
    figure, panels = epoch_panels(metrics)
    for metric, axes in zip(metrics, panels, strict=True):
        for record, style, label in (
            (result.baseline, "--", f"baseline {result.baseline.run_id[:8]}"),
            (result.now, "-", f"now {result.now.run_id[:8]}"),
        ):
            values = record.history.get(metric, [])
            axes.plot(range(1, len(values) + 1), values, style, marker=".", label=label)
        axes.legend(fontsize="small")
    return figure


def _number(value: float | None) -> str:
    return "none" if value is None else f"{value:.6g}"


def _finite(value: float) -> float | str | None:
    """NaN as null and infinities as "inf"/"-inf": strict JSON has neither."""
    if math.isnan(value):
        return None
    return value if math.isfinite(value) else str(value)


def _one_line(match: re.Match[str]) -> str:
    return "[" + ", ".join(item.strip() for item in match.group(1).split(",")) + "]"
