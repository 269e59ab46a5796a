"""What a sweep is asked to do (`SweepOptions`), what each process working it starts from
(`SweepConfig`), and what it reports (`TrialRow`, `SweepResult`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dlx.train.progress import ProgressListener


@dataclass(frozen=True)
class SweepOptions:
    """How to run a sweep (`dlx.api.sweep`): each field is the `dlx sweep` option of its name,
    and the callbacks are how the caller hears of its progress."""

    trials: int | None = None
    """How many trials in all; default: the section's `trials`."""
    jobs: int | None = 1
    """Trials at once, each in its own process; `None`: one per GPU, else 1."""
    storage: str | None = None
    """The Optuna storage URL; default: `optuna.db` beside an SQLite MLflow store (else in the
    working folder), each call a new sweep; with `resume` or `join`: the sweep's own. Given
    (without `resume` or `join`), the study is named from the spec: the first process creates
    it, the others join it while it is unfinished, and a finished one leads to a new study
    (`-2`, `-3`...)."""
    resume: str | None = None
    """A sweep's parent run id (or a prefix): continue it; trials interrupted (Ctrl-C, a process
    killed) are resumed or rerun, the finished ones kept."""
    join: str | None = None
    """A sweep's parent run id (or a prefix): work its study alongside the process that started
    it (another machine, sharing `storage` and the MLflow store); if that process is gone (its
    parent run KILLED or FAILED, or RUNNING with its process gone from this machine), take the
    sweep over as `resume` does."""
    retry_failed: bool = False
    """Rerun the trials that failed, with the same values."""
    tracking_uri: str | None = None
    """The MLflow store when the spec names none."""
    progress: ProgressListener | None = None
    """Follows each trial's epochs (`dlx.train.progress`); none by default."""
    on_start: Callable[[str, str, int, str], None] | None = None
    """Called with the parent run id, the storage (password hidden), the number of trials and
    how this process works the sweep (`started`, `resumed`, `joined`, or `taken over`: a sweep
    joined whose first process is gone is continued as `resume` does) once the sweep is set
    up."""
    on_trial: Callable[[TrialRow], None] | None = None
    """Called with each trial's `TrialRow` as it ends (trials of this process; other jobs report
    their own)."""
    on_progress: Callable[[SweepResult], None] | None = None
    """Called about every second, from another thread, with a `SweepResult` of all the sweep's
    trials so far (every process's, those under way too): what a live table shows."""


@dataclass
class SweepConfig:
    """What every process working one sweep needs (passed to `--jobs` workers as JSON)."""

    spec: str
    overrides: list[str]
    parent_run_id: str
    storage: str
    tracking_uri: str
    trials: int
    seed: int = 0
    """The sampler's seed: the spec's, plus the worker's index (each draws its own values)."""
    threads: int = 0
    """TensorFlow's threads for this process; 0: TensorFlow's default."""
    study: str = ""
    """The Optuna study's name; empty: the parent run's id."""
    coordinator: int = 0
    """A `--jobs` worker's: the process id of the sweep that started it (it dies with it)."""

    @property
    def study_name(self) -> str:
        return self.study or self.parent_run_id

    def to_json(self) -> str:
        import json

        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> SweepConfig:
        import json

        return cls(**json.loads(text))


@dataclass
class TrialRow:
    """One finished trial, as the sweep reports it while it runs."""

    number: int
    state: str
    """COMPLETE, PRUNED or FAILED (and, while the sweep runs, RUNNING or WAITING)."""
    value: float | None
    params: dict[str, Any]
    run_ids: list[str]
    seconds: float
    note: str = ""
    epochs: int = 0
    """The epochs its (first) run has finished, as reported to the study."""


@dataclass
class SweepResult:
    """A sweep's end: its parent run, its trials, and the best."""

    parent_run_id: str
    storage: str
    metric: str
    goal: str
    trials: list[TrialRow] = field(default_factory=list)
    best: TrialRow | None = None
    best_run_id: str | None = None
    ui_hint: str = ""
