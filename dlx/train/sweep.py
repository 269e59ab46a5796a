"""Sweeps (`dlx sweep`, docs/spec.md section 10): a spec's `sweep:` section run as an
Optuna study, one MLflow parent run with a child run per trial.

Optuna is the engine and its storage the only state. Without `--storage` the study lives in
an SQLite file beside the MLflow store (`optuna.db`), named by the parent run's id: each
`dlx sweep` is a new sweep. With `--storage URL` (a database several machines share) the study
is named from the spec (`study_name`): the first process to create it starts the parent run
and records its id in the study; the others, started with the same command, join it (a study
that has all its trials is done: the command then starts `<name>-2`, `-3`...). Every process
that works the study (the `--jobs` of one machine, the machines that join) runs the same loop
against that storage: ask a trial, train it as a complete dlx run, tell its result, until the
sweep has its trials.

Exactly `trials` trials count in the end. A trial is counted unless it was retried (a newer
trial carries its number in the user attribute `retry_of`) or it was asked for after the
sweep already had its trials by then (another process asked first: `surplus`, told FAILED).
A FAILED trial with an `error` failed on its own (`--retry-failed` reruns it); one without was
interrupted: Ctrl-C, its process gone from this machine (`kill -9`), or its heartbeat lost (a
process records one in the storage every `HEARTBEAT_S` while its trial trains; a machine gone
goes silent). An interrupted trial is rerun by `--resume`, and by the sweep's first process
before it ends: its child run continues from its checkpoints with `dlx train --resume`'s
machinery when they are on this machine, else it trains again.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import subprocess
import sys
import threading
import time
import warnings
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dlx.errors import DlxError, Interrupted, Problem, SpecError, UsageError
from dlx.spec import LoadedSpec, apply_overrides, read_document
from dlx.spec.load import validate_document
from dlx.spec.schema import Sweep, SweepParam
from dlx.track.tags import (
    PARENT_RUN,
    PRUNED,
    REPEAT,
    SWEEP,
    SWEEP_BEST_RUN,
    SWEEP_BEST_TRIAL,
    SWEEP_GOAL,
    SWEEP_METHOD,
    SWEEP_METRIC,
    SWEEP_STUDY,
    SWEEP_TRIALS,
    TRIAL,
)
from dlx.track.tags import PROCESS as RUN_PROCESS
from dlx.train.resume import this_process

DEFAULT_TRIALS = 10
"""Trials of a sweep that names none (and is not a grid)."""

# Trial user attributes, the sweep's own bookkeeping in the study.
RETRY_OF = "retry_of"
RESUME_RUN = "resume_run"
PROCESS = "process"
SURPLUS = "surplus"
ERROR = "error"
RUN_IDS = "run_ids"
STORAGE_ATTEMPTS = 5
"""Tries to open a new Optuna database that other processes are creating at the same moment."""
WORKER_SEED_STRIDE = 1_000_003
"""How far apart the samplers' seeds of a sweep's `--jobs` processes are."""
HEARTBEAT_S = 30
"""How often a trial's process records in the storage that it is alive; a RUNNING trial not
heard of for `HEARTBEAT_GRACE_S` is taken for lost (its machine gone, say) and told FAILED."""
HEARTBEAT_GRACE_S = 120
ASK_GRACE_S = 10
"""How long a process may take to record itself on the trial it just asked for."""
PARENT = "parent_run"
"""The study's user attribute naming its sweep's parent run (a study named from the spec)."""
OWNER_BEAT = "owner_alive_at"
"""The study's user attribute where the process that owns the sweep (started, resumed or took
it over; it records the summary and ends the parent run) records, every `HEARTBEAT_S`, that it
is alive: the time, in seconds since the epoch."""

WORKER_CONFIG = "DLX_SWEEP_WORKER"
"""The environment variable holding a `--jobs` worker's `SweepConfig`, as JSON."""


# --- what a sweep section means: directions, samplers, pruners -------------------------------


def goal(sweep: Sweep) -> str:
    """`max` or `min`: the section's `goal`, else from the metric's name (loss, error: min)."""
    from dlx.track.compare import higher_is_better

    return sweep.goal or ("max" if higher_is_better(sweep.metric) else "min")


def grid_values(param: SweepParam) -> list[Any] | None:
    """Every value a grid takes for `param`; `None` for a continuous range."""
    if param.kind == "choice":
        return _encoded_choices(param)
    if param.kind == "int":
        low, high = param.values
        return list(range(low, high + 1, round(param.step or 1)))
    return None


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


def _encoded_choices(param: SweepParam) -> list[Any]:
    """Optuna's categorical values: the choices when all are scalars, else their indices."""
    choices = param.values
    return choices if all(_scalar(c) for c in choices) else list(range(len(choices)))


def _decoded(param: SweepParam, value: Any) -> Any:
    if param.kind == "choice" and not all(_scalar(c) for c in param.values):
        return param.values[value]
    return value


def _grid(sweep: Sweep, seed: int) -> Any:
    import optuna

    class Grid(optuna.samplers.GridSampler):
        """Optuna's grid, which does not stop the study once every point is drawn: the
        sweep stops at its number of trials, and `study.stop` works only inside
        `study.optimize`, which a sweep does not use (it asks and tells)."""

        def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
            return None

    space = {path: grid_values(param) for path, param in sweep.params.items()}
    return Grid(space, seed=seed)


def _random(sweep: Sweep, seed: int) -> Any:
    import optuna

    return optuna.samplers.RandomSampler(seed=seed)


def _tpe(sweep: Sweep, seed: int) -> Any:
    import optuna

    return optuna.samplers.TPESampler(seed=seed)


def _cmaes(sweep: Sweep, seed: int) -> Any:
    import optuna

    # CMA-ES samples numbers; the choices it leaves to its independent sampler.
    return optuna.samplers.CmaEsSampler(
        seed=seed, independent_sampler=optuna.samplers.RandomSampler(seed=seed)
    )


SAMPLERS: dict[str, Callable[[Sweep, int], Any]] = {
    "grid": _grid,
    "random": _random,
    "tpe": _tpe,
    "cmaes": _cmaes,
}
"""Each `sweep.method`, and the Optuna sampler it makes for a sweep and a seed."""

PRUNER_ARGUMENTS: dict[str, dict[str, str]] = {
    "median": {"warmup_epochs": "n_warmup_steps", "startup_trials": "n_startup_trials"},
    "hyperband": {
        "min_epochs": "min_resource",
        "max_epochs": "max_resource",
        "reduction_factor": "reduction_factor",
    },
    "successive_halving": {
        "min_epochs": "min_resource",
        "reduction_factor": "reduction_factor",
    },
}
"""Each pruner's arguments in the spec, and the Optuna argument each one is."""

_PRUNER_CLASSES = {
    "median": "MedianPruner",
    "hyperband": "HyperbandPruner",
    "successive_halving": "SuccessiveHalvingPruner",
}


def split_pruner(prune: Any) -> tuple[str, list[Any], dict[str, Any]]:
    """A pruner's name, positional arguments (none are taken) and keyword arguments."""
    from dlx.spec import split_component

    return split_component(prune, "pruner")


def pruner_problems(loaded: LoadedSpec) -> list[Problem]:
    """What is wrong with `sweep.prune`: an unknown pruner or argument."""
    sweep = loaded.spec.sweep
    if sweep is None or sweep.prune is None:
        return []
    from dlx.errors import did_you_mean

    name, positional, arguments = split_pruner(sweep.prune)
    where = ("sweep", "prune")
    if name not in PRUNER_ARGUMENTS:
        message = (
            f"unknown pruner. Expected one of {', '.join(PRUNER_ARGUMENTS)}. Received: "
            f"'{name}'{did_you_mean(name, PRUNER_ARGUMENTS)}"
        )
        return [loaded.document.problem(where, message)]
    allowed = PRUNER_ARGUMENTS[name]
    if positional:
        message = f"expected arguments by name ({', '.join(allowed)}). Received: {positional}"
        return [loaded.document.problem((*where, name), message)]
    return [
        loaded.document.problem(
            (*where, name, key),
            f"unknown argument of {name}. Expected one of {', '.join(allowed)}",
            key=True,
        )
        for key in arguments
        if key not in allowed
    ]


def _pruner(sweep: Sweep) -> Any:
    import optuna

    if sweep.prune is None:
        return optuna.pruners.NopPruner()
    name, _, arguments = split_pruner(sweep.prune)
    renamed = {PRUNER_ARGUMENTS[name][key]: value for key, value in arguments.items()}
    if name == "median":
        renamed.setdefault("n_startup_trials", 1)
    return getattr(optuna.pruners, _PRUNER_CLASSES[name])(**renamed)


# --- the spec of a trial ---------------------------------------------------------------------


def path_problems(loaded: LoadedSpec) -> list[Problem]:
    """Each swept path that is not in the spec (`--set` would create it; a sweep would then
    search a value that nothing reads), at its key in `sweep.params`."""
    sweep = loaded.spec.sweep
    problems = []
    for dotted in sweep.params if sweep else {}:
        missing = _missing_step(loaded.document.data, dotted.split("."))
        if missing is not None:
            where = ("sweep", "params", dotted)
            message = f"no such path in the spec: {missing}"
            problems.append(loaded.document.problem(where, message, key=True))
    return problems


def _missing_step(data: Any, parts: list[str]) -> str | None:
    """Where a dotted path leaves the spec's data, in words; `None` when it is all there."""
    from dlx.errors import did_you_mean

    here: Any = data
    for depth, part in enumerate(parts):
        at = ".".join(parts[:depth]) or "the spec"
        if isinstance(here, dict):
            if part not in here:
                return f"{at} has no key '{part}'{did_you_mean(part, [str(k) for k in here])}"
            here = here[part]
        elif isinstance(here, list):
            if not (part.isdigit() and int(part) < len(here)):
                return f"{at} is a list of {len(here)} (items 0 to {len(here) - 1}), no {part}"
            here = here[int(part)]
        else:
            return f"{at} holds {here!r}, not a mapping with '{part}'"
    return None


def trial_spec(
    path: str | Path, overrides: list[str] | tuple[str, ...], values: dict[str, Any]
) -> LoadedSpec:
    """The spec a trial trains: the file with `--set` overrides and the trial's values, without
    its `sweep:` section (a trial's logged spec trains as written with `dlx train`).

    Raises:
        SpecError: the spec is invalid with these values.
    """
    doc = read_document(path)
    apply_overrides(doc, list(overrides))
    if isinstance(doc.data, dict):
        doc.data.pop("sweep", None)
    for dotted, value in values.items():
        parent: Any = doc.data
        parts = [int(p) if p.lstrip("-").isdigit() else p for p in dotted.split(".")]
        for part in parts[:-1]:
            parent = parent[part]
        parent[parts[-1]] = value
    return validate_document(doc)


# --- running -------------------------------------------------------------------------------


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


def default_storage(tracking_uri: str) -> str:
    """An SQLite file `optuna.db` beside an SQLite MLflow store, else in the working folder."""
    from dlx.track.store import sqlite_file

    local = sqlite_file(tracking_uri)
    folder = local.parent if local is not None else Path.cwd()
    return f"sqlite:///{folder / 'optuna.db'}"


def shown_storage(storage: str) -> str:
    """A storage URL with its password hidden, to record and print."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", storage)


def _storage(url: str) -> Any:
    """Optuna's storage at `url` (PostgreSQL through whichever driver is installed; SQLite
    waiting up to a minute for a lock, as several processes share it)."""
    import optuna
    from sqlalchemy.exc import IntegrityError, SQLAlchemyError

    from dlx.track.store import mlflow_uri

    options = {"connect_args": {"timeout": 60}} if url.startswith("sqlite:") else {}
    try:
        for attempt in range(STORAGE_ATTEMPTS):
            try:
                with _heartbeat_warnings_off():
                    return optuna.storages.RDBStorage(
                        mlflow_uri(url),
                        engine_kwargs=options,
                        heartbeat_interval=HEARTBEAT_S,
                        grace_period=HEARTBEAT_GRACE_S,
                    )
            except IntegrityError:
                # Processes starting at once on a new database both create Optuna's tables;
                # PostgreSQL refuses the second's (a duplicate type): its tables are there now.
                if attempt == STORAGE_ATTEMPTS - 1:
                    raise
                time.sleep(1.0)
    except (SQLAlchemyError, ImportError, ValueError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        hint = " (its password is not recorded: give --storage URL)" if "***@" in url else ""
        raise DlxError(
            f"cannot open the Optuna storage {shown_storage(url)}: {reason}{hint}"
        ) from None


@contextlib.contextmanager
def _heartbeat_warnings_off() -> Any:
    """Optuna's heartbeat is experimental, and made for `Study.optimize`, which warns: dlx asks
    and tells itself, and beats while a trial trains (`_heartbeat`)."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
        yield


def _fail_lost_trials(study: Any) -> None:
    """Tell FAILED (interrupted: no error) the RUNNING trials whose heartbeat was lost."""
    import optuna

    with _heartbeat_warnings_off():
        optuna.storages.fail_stale_trials(study)


def _study(config: SweepConfig, sweep: Sweep, *, create: bool) -> Any:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = SAMPLERS[sweep.method](sweep, config.seed)
    storage = _storage(config.storage)
    if create:
        return optuna.create_study(
            storage=storage,
            study_name=config.study_name,
            direction="maximize" if goal(sweep) == "max" else "minimize",
            sampler=sampler,
            pruner=_pruner(sweep),
        )
    try:
        return optuna.load_study(
            study_name=config.study_name,
            storage=storage,
            sampler=sampler,
            pruner=_pruner(sweep),
        )
    except KeyError:
        raise UsageError(
            f"no sweep {config.study_name} in the Optuna storage {shown_storage(config.storage)}"
            " (give the storage it ran with: --storage URL)"
        ) from None


def counted(trials: list[Any]) -> list[Any]:
    """The trials that count towards the sweep's number: not retried, not surplus, and not a
    second retry of one trial (two processes that resume a sweep at once both enqueue one)."""
    retried = {t.user_attrs[RETRY_OF] for t in trials if RETRY_OF in t.user_attrs}
    return [
        t
        for t in trials
        if t.number not in retried
        and not t.user_attrs.get(SURPLUS)
        and not _second_retry(t, trials)
    ]


def _second_retry(trial: Any, trials: list[Any]) -> bool:
    """Whether an earlier trial already retries the trial that `trial` retries."""
    of = trial.user_attrs.get(RETRY_OF)
    return of is not None and any(
        t.number < trial.number and t.user_attrs.get(RETRY_OF) == of for t in trials
    )


def total_trials(sweep: Sweep, asked: int | None) -> int:
    """`--trials`, else the section's `trials`, else the grid's size (or 10)."""
    if asked is not None:
        return asked
    if sweep.trials is not None:
        return sweep.trials
    if sweep.method == "grid":
        return math.prod(len(grid_values(p) or []) for p in sweep.params.values())
    return DEFAULT_TRIALS


def work(
    config: SweepConfig,
    *,
    live: bool | None = None,
    on_trial: Callable[[TrialRow], None] | None = None,
) -> None:
    """Work the study until the sweep has its trials: ask, train, tell.

    Raises:
        Interrupted: Ctrl-C or SIGTERM; the trial in progress is told FAILED and marked
            interrupted (a `--resume` reruns it), its run recorded KILLED.
    """
    import logging

    if config.threads:
        os.environ.setdefault("TF_NUM_INTRAOP_THREADS", str(config.threads))
        os.environ.setdefault("TF_NUM_INTEROP_THREADS", "2")
    # Each trial builds new functions of a new model: TensorFlow's warning that functions are
    # traced again says nothing about a sweep.
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    loaded = trial_spec(config.spec, config.overrides, {})
    sweep = _sweep_of(config)
    study = _study(config, sweep, create=False)
    # Seeded by the trials already there too: a resumed or joining process draws anew.
    study.sampler = SAMPLERS[sweep.method](sweep, config.seed + len(study.trials))
    while True:
        trials = study.get_trials(deepcopy=False)
        waiting = any(t.state.name == "WAITING" for t in trials)
        if not waiting and len(counted(trials)) >= config.trials:
            return
        with _heartbeat_warnings_off(), _one_asks_at_a_time(config):
            trial = study.ask()
            trial.set_user_attr(PROCESS, this_process())
        trials = study.get_trials(deepcopy=False)
        if _second_retry(trial, trials):
            trial.set_user_attr(SURPLUS, True)
            study.tell(trial, state=_state("FAIL"))
            continue
        earlier = [t for t in counted(trials) if t.number < trial.number]
        if len(earlier) >= config.trials and RETRY_OF not in trial.user_attrs:
            trial.set_user_attr(SURPLUS, True)
            study.tell(trial, state=_state("FAIL"))
            return
        row = _run_trial(config, loaded, sweep, study, trial, live)
        if on_trial is not None:
            on_trial(row)


@contextlib.contextmanager
def _one_asks_at_a_time(config: SweepConfig) -> Any:
    """With an SQLite storage, one process of this machine at a time asks for a trial. Optuna
    takes a waiting (enqueued) trial with `SELECT ... FOR UPDATE`, which SQLite ignores: two
    processes asking at once could both take the same one (the `--jobs` of a resumed sweep
    both resuming one interrupted trial's run). PostgreSQL locks the row itself."""
    from dlx.track.store import sqlite_file

    database = sqlite_file(config.storage)
    try:
        import fcntl
    except ImportError:  # not POSIX
        fcntl = None  # type: ignore[assignment]
    if database is None or fcntl is None:
        yield
        return
    with open(database.with_name(database.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def wait_for_others(config: SweepConfig, every: float = 2.0) -> None:
    """Wait until no trial of the sweep runs in another process that is still there (on this
    machine, by its pid; on another, by its heartbeat)."""
    study = _study(config, _sweep_of(config), create=False)
    while True:
        _fail_lost_trials(study)
        trials = study.get_trials(deepcopy=False)
        if not any(t.state.name == "RUNNING" and not _gone(t) for t in trials):
            return
        time.sleep(every)


def _gone(trial: Any) -> bool:
    """Whether a RUNNING trial's process is known to be gone from this machine (one that never
    said which it is, `ASK_GRACE_S` after asking for it, counts as gone: killed in between)."""
    from datetime import datetime

    from dlx.train.resume import gone

    process = trial.user_attrs.get(PROCESS, "")
    if not process:
        return (datetime.now() - trial.datetime_start).total_seconds() > ASK_GRACE_S
    return gone(process)


def _state(name: str) -> Any:
    from optuna.trial import TrialState

    return TrialState[name]


def _sweep_of(config: SweepConfig) -> Sweep:
    doc = read_document(config.spec)
    apply_overrides(doc, list(config.overrides))
    sweep = validate_document(doc).spec.sweep
    if sweep is None:
        raise SpecError([Problem(f"{config.spec} has no sweep: section")])
    return sweep


def _suggest(trial: Any, dotted: str, param: SweepParam) -> Any:
    kind, values = param.kind, param.values
    if kind == "choice":
        return _decoded(param, trial.suggest_categorical(dotted, _encoded_choices(param)))
    if kind == "int":
        return trial.suggest_int(dotted, values[0], values[1], step=round(param.step or 1))
    return trial.suggest_float(
        dotted, values[0], values[1], log=kind == "log_uniform", step=param.step
    )


def _run_trial(
    config: SweepConfig, base: LoadedSpec, sweep: Sweep, study: Any, trial: Any, live: bool | None
) -> TrialRow:
    """Train a trial's runs (one per repeat), then tell the study its result."""
    started = time.perf_counter()
    values = {dotted: _suggest(trial, dotted, p) for dotted, p in sweep.params.items()}
    row = TrialRow(trial.number, "COMPLETE", None, dict(trial.params), [], 0.0)
    try:
        with _heartbeat(study, trial):
            scores = _train_repeats(config, base, sweep, trial, values, row, live)
    except KeyboardInterrupt:
        study.tell(trial, state=_state("FAIL"))  # without an error: interrupted
        raise
    except Exception as exc:  # a failed trial is recorded (its run FAILED), the sweep goes on
        from dlx.train.runner import TrainingFailed

        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if isinstance(exc, SpecError):
            message = exc.render().splitlines()[0]
        trial.set_user_attr(ERROR, message)
        row.state, row.note = "FAILED", message
        if isinstance(exc, TrainingFailed):  # its run is recorded FAILED
            found = _trial_runs(config, trial.number)
            row.run_ids += [run_id for run_id in found if run_id not in row.run_ids]
        else:  # it failed before its run was opened
            row.run_ids.append(_failed_run(config, base, trial, values, exc))
        trial.set_user_attr(RUN_IDS, row.run_ids)
    if row.state == "COMPLETE":
        row.value = sum(scores) / len(scores)
        if len(scores) > 1:
            spread = math.sqrt(sum((s - row.value) ** 2 for s in scores) / (len(scores) - 1))
            trial.set_user_attr(f"{sweep.metric}_std", spread)
            spread_metrics = {f"{sweep.metric}_mean": row.value, f"{sweep.metric}_std": spread}
            for run_id in row.run_ids:
                _log_metrics(config, run_id, spread_metrics)
            row.note = f"{len(scores)} seeds, std {spread:.4g}"
        study.tell(trial, row.value)
    else:
        study.tell(trial, state=_state("PRUNED" if row.state == "PRUNED" else "FAIL"))
    return _done(row, started)


@contextlib.contextmanager
def _heartbeat(study: Any, trial: Any) -> Any:
    """Record in the storage that this trial's process is alive, every `HEARTBEAT_S` while the
    block runs (Optuna's own heartbeat, recorded by a thread as `Study.optimize` does)."""
    stop = threading.Event()

    def beat() -> None:
        while True:
            with contextlib.suppress(Exception):  # a storage away for a moment: the next beat
                study._storage.record_heartbeat(trial._trial_id)
            if stop.wait(HEARTBEAT_S):
                return

    thread = threading.Thread(target=beat, name="dlx-trial-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _train_repeats(
    config: SweepConfig,
    base: LoadedSpec,
    sweep: Sweep,
    trial: Any,
    values: dict[str, Any],
    row: TrialRow,
    live: bool | None,
) -> list[float]:
    """Train a trial's runs, one per seed; each one's metric (none when the first is pruned,
    with `row.state` PRUNED)."""
    from dlx.train.pruning import PruneTrial

    tags = {PARENT_RUN: config.parent_run_id, TRIAL: str(trial.number)}
    scores = []
    for repeat in range(sweep.repeats):
        if sweep.repeats > 1:
            values["seed"] = base.spec.seed + repeat
            tags[REPEAT] = str(repeat)
        pruning = PruneTrial(trial, sweep.metric) if repeat == 0 else None
        result = _train_trial(config, trial, values, tags, pruning, live)
        row.run_ids.append(result.run_id)
        trial.set_user_attr(RUN_IDS, row.run_ids)
        if pruning is not None and pruning.pruned_after is not None:
            _set_tag(config, result.run_id, PRUNED, str(pruning.pruned_after))
            row.state, row.note = "PRUNED", f"pruned after epoch {pruning.pruned_after}"
            row.value = result.metrics.get(sweep.metric)
            return []
        if sweep.metric not in result.metrics:
            known = ", ".join(sorted(result.metrics))
            raise DlxError(f"sweep.metric: the run has no metric '{sweep.metric}'. It has: {known}")
        scores.append(float(result.metrics[sweep.metric]))
    return scores


def _failed_run(
    config: SweepConfig, base: LoadedSpec, trial: Any, values: dict[str, Any], exc: Exception
) -> str:
    """A FAILED child run for a trial that failed before its run was opened (its data does
    not fit its model at these values, say): the trial's values and the error's traceback."""
    import traceback

    from dlx.track import TrackedRun

    run = TrackedRun(
        base.spec.tracking.experiment or base.name,
        run_name=base.name,
        tracking_uri=config.tracking_uri,
        tags={PARENT_RUN: config.parent_run_id, TRIAL: str(trial.number)},
        params={dotted: str(value) for dotted, value in values.items()},
    )
    run.start()
    try:
        text = exc.render() + "\n\n" if isinstance(exc, SpecError) else ""
        text += "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        run.log_text(text, "traceback.txt")
    finally:
        run.end("FAILED")
    return run.run_id or ""


def _done(row: TrialRow, started: float) -> TrialRow:
    row.seconds = time.perf_counter() - started
    return row


def _train_trial(
    config: SweepConfig,
    trial: Any,
    values: dict[str, Any],
    tags: dict[str, str],
    pruning: Any,
    live: bool | None,
) -> Any:
    """Train one run of a trial: a new child run, or the interrupted trial's run resumed."""
    from dlx.train.runner import train

    callbacks = [pruning] if pruning is not None else []
    previous = trial.user_attrs.get(RESUME_RUN)
    if previous and REPEAT not in tags:
        resumed = _resumable(config, previous)
        if resumed is not None:
            loaded, point = resumed
            return train(loaded, live=live, tags=tags, resume=point, callbacks=callbacks)
        _end_abandoned(config, previous)
    loaded = trial_spec(config.spec, config.overrides, values)
    return train(
        loaded, live=live, tracking_uri=config.tracking_uri, tags=tags, callbacks=callbacks
    )


def _end_abandoned(config: SweepConfig, run_id: str) -> None:
    """Record KILLED an interrupted trial's run that is trained again instead of resumed (its
    checkpoints were on a machine that is gone), if nothing recorded its end."""
    client = _client(config)
    if client.get_run(run_id).info.status == "RUNNING":
        client.set_terminated(run_id, status="KILLED")


def _resumable(config: SweepConfig, run_id: str) -> tuple[LoadedSpec, Any] | None:
    """An interrupted trial's run and where to resume it from; `None` when it cannot be."""
    from dlx.spec import load_spec_text
    from dlx.track.read import open_store
    from dlx.train.resume import resume_point

    store = open_store(config.tracking_uri)
    run = store.get_run(run_id)
    if run is None:
        return None
    try:
        point = resume_point(run, store.uri)
    except UsageError:
        return None
    source = Path(run.data.tags.get("mlflow.source.name") or config.spec)
    return load_spec_text(store.spec_text(run_id), source), point


def _client(config: SweepConfig) -> Any:
    from dlx.track.store import open_for_writing

    return open_for_writing(config.tracking_uri)


def _set_tag(config: SweepConfig, run_id: str, key: str, value: str) -> None:
    _client(config).set_tag(run_id, key, value)


def _log_metrics(config: SweepConfig, run_id: str, metrics: dict[str, float]) -> None:
    client = _client(config)
    for key, value in metrics.items():
        client.log_metric(run_id, key, value)


# --- the sweep's process: the parent run, the workers, the summary -----------------------------


def run_sweep(
    loaded: LoadedSpec,
    overrides: list[str] | tuple[str, ...],
    *,
    trials: int | None = None,
    jobs: int = 1,
    storage: str | None = None,
    resume: str | None = None,
    join: str | None = None,
    retry_failed: bool = False,
    tracking_uri: str | None = None,
    live: bool | None = None,
    on_start: Callable[[str, str, int, str], None] | None = None,
    on_trial: Callable[[TrialRow], None] | None = None,
    on_progress: Callable[[SweepResult], None] | None = None,
) -> SweepResult:
    """Run a sweep, or resume or join one, to its end; see `dlx.api.sweep`."""
    from dlx.track.store import resolve_tracking_uri

    sweep = loaded.spec.sweep
    assert sweep is not None
    uri = resolve_tracking_uri(loaded.spec.tracking.uri or tracking_uri)
    existing = resume or join
    parent = _existing_parent(uri, existing) if existing else None
    named = parent is None and storage is not None  # first come creates it, the others join
    if parent is not None:
        storage = storage or parent.data.tags.get(SWEEP) or default_storage(uri)
        count = trials or int(parent.data.tags.get(SWEEP_TRIALS, total_trials(sweep, None)))
    else:
        storage = storage or default_storage(uri)
        count = total_trials(sweep, trials)
    config = SweepConfig(
        spec=str(loaded.document.path),
        overrides=list(overrides),
        parent_run_id=parent.info.run_id if parent is not None else "",
        storage=storage,
        tracking_uri=uri,
        trials=count,
        seed=loaded.spec.seed,
        study=parent.data.tags.get(SWEEP_STUDY, "") if parent is not None else "",
    )
    if parent is None:
        _storage(storage)  # a storage that cannot be used fails here, before any run
        joined = _claim_study(config, sweep, loaded) if named else None
        if joined is not None:
            config.parent_run_id = join = joined
        else:
            run = _parent_run(loaded, config, sweep)
            run.start()
            config.parent_run_id = run.run_id
            try:
                study = _study(config, sweep, create=not named)
                if named:
                    study.set_user_attr(PARENT, run.run_id)
            except BaseException:
                _end_parent(config, "FAILED")
                raise
    how = "joined" if join is not None else "resumed" if resume is not None else "started"
    if join is not None and _owner_gone(config, sweep):
        resume, join, how = config.parent_run_id, None, "taken over"  # its first process is gone
    if resume is not None:
        _parent_run(loaded, config, sweep).reopen(config.parent_run_id)
    if on_start is not None:
        on_start(config.parent_run_id, shown_storage(storage), count, how)
    owner = join is None
    if not owner:
        # Processes that join at once find the same trials there: their own identity keeps
        # their samplers apart (`work` seeds with the trials already there).
        config.seed += zlib.crc32(this_process().encode())
    watching = _watch(config, sweep, on_progress) if on_progress is not None else None
    beating = _beat_as_owner(config, sweep) if owner else None
    try:
        study = _study(config, sweep, create=False)
        if resume is not None:
            _requeue(config, study, interrupted=True)
        if retry_failed:
            _requeue(config, study, interrupted=False)
        while True:
            if jobs <= 1:
                work(config, live=live, on_trial=on_trial)
            else:
                _work_in_processes(config, jobs)
            if not owner:
                # The process that owns the sweep lost without a word (a sweep stopped on
                # purpose stays stopped): this one ends it.
                if _owner_gone(config, sweep) != "lost":
                    break
                owner = True
                _parent_run(loaded, config, sweep).reopen(config.parent_run_id)
                beating = _beat_as_owner(config, sweep)
            # The summary counts the trials that joined processes are finishing. Those that end
            # interrupted meanwhile (a process stopped, or the jobs of a killed sweep that this
            # one resumes, still stopping when it began) are rerun: the sweep has N trials.
            wait_for_others(config)
            if not _requeue(config, study, interrupted=True):
                break
        result = _summary(config, sweep, study)
        if owner or result.best is not None:
            _record_summary(config, sweep, study, result)
    except KeyboardInterrupt as exc:
        stopped = exc if isinstance(exc, Interrupted) else Interrupted()
        if owner:
            _end_parent(config, "KILLED")
        raise type(stopped)(
            f"{stopped.cause}: sweep {config.parent_run_id} recorded KILLED; continue it with "
            f"`dlx sweep {loaded.document.path} --resume {config.parent_run_id}`"
        ) from None
    except BaseException:
        if owner:
            _end_parent(config, "FAILED")
        raise
    finally:
        for thread in (watching, beating):
            if thread is not None:
                thread.set()
    if owner:
        _end_parent(config, "FINISHED")
    return result


def _watch(
    config: SweepConfig,
    sweep: Sweep,
    on_progress: Callable[[SweepResult], None],
    every: float = 1.0,
) -> Any:
    """A thread that reads the study every `every` seconds and gives `on_progress` all its
    trials (every process's, those running too), until the event it returns is set."""
    import threading

    stop = threading.Event()
    study = _study(config, sweep, create=False)

    def show() -> None:
        import contextlib

        from sqlalchemy.exc import SQLAlchemyError

        # The storage busy a moment (SQLite locked): the table is redrawn the next time.
        with contextlib.suppress(SQLAlchemyError):
            on_progress(_summary(config, sweep, study))

    def poll() -> None:
        while not stop.wait(every):
            show()
        show()

    threading.Thread(target=poll, name="dlx-sweep-watch", daemon=True).start()
    return stop


def study_name(loaded: LoadedSpec, trials: int) -> str:
    """The study of a sweep started with `--storage`: `dlx-<spec name>-<digest>`, the digest
    of the spec as resolved (its `--set` overrides applied) and its number of trials; the same
    command on every machine names the same study."""
    import hashlib

    from dlx.track.tags import resolved_spec_text

    text = f"{resolved_spec_text(loaded)}\ntrials: {trials}\n"
    return f"dlx-{loaded.name}-{hashlib.sha256(text.encode()).hexdigest()[:10]}"


def _claim_study(config: SweepConfig, sweep: Sweep, loaded: LoadedSpec) -> str | None:
    """Create the spec's study (`study_name`), or find the unfinished one to join; sets
    `config.study`. Returns the parent run id of the sweep to join, or `None` when this
    process created the study (and is to start its parent run). A study that has all its
    trials is done: the next name (`-2`, `-3`...) is tried."""
    import optuna

    base, index = study_name(loaded, config.trials), 1
    while True:
        config.study = base if index == 1 else f"{base}-{index}"
        index += 1
        try:  # of processes racing to create it, one succeeds; the others find it there
            _study(config, sweep, create=True)
            return None
        except optuna.exceptions.DuplicatedStudyError:
            pass
        study = _study(config, sweep, create=False)
        parent = _wait_for_parent(config, study)
        ended = [t for t in counted(study.get_trials(deepcopy=False)) if t.state.is_finished()]
        if len(ended) < config.trials:
            return parent


def _wait_for_parent(config: SweepConfig, study: Any, seconds: float = 60.0) -> str:
    """The parent run id that the study's creator records an instant after creating it."""
    deadline = time.monotonic() + seconds
    while PARENT not in study.user_attrs:
        if time.monotonic() > deadline:
            raise DlxError(
                f"the study {config.study} in {shown_storage(config.storage)} has no sweep run "
                f"after {seconds:.0f}s (the process that created it stopped before starting it); "
                "delete the study, or give --join SWEEP"
            )
        time.sleep(0.5)
    return str(study.user_attrs[PARENT])


def _owner_gone(config: SweepConfig, sweep: Sweep) -> str:
    """Whether the process that owns a sweep is gone: `stopped` (its parent run ended
    unfinished: Ctrl-C, a failure), `lost` (the parent is RUNNING while the process it records
    is not: of this machine, by its pid; of another, silent for `HEARTBEAT_GRACE_S`), or
    `""` (it is there, or the sweep finished)."""
    from dlx.train.resume import gone

    run = _client(config).get_run(config.parent_run_id)
    if run.info.status != "RUNNING":
        return "stopped" if run.info.status in ("KILLED", "FAILED") else ""
    if gone(run.data.tags.get(RUN_PROCESS, "")):
        return "lost"
    beat = _study(config, sweep, create=False).user_attrs.get(OWNER_BEAT)
    silent = beat is not None and time.time() - float(beat) > HEARTBEAT_GRACE_S
    return "lost" if silent else ""


def _beat_as_owner(config: SweepConfig, sweep: Sweep) -> threading.Event:
    """A thread that records in the study, every `HEARTBEAT_S`, that this process owns the
    sweep and is alive (`OWNER_BEAT`), until the event it returns is set."""
    stop = threading.Event()
    study = _study(config, sweep, create=False)

    def beat() -> None:
        while True:
            with contextlib.suppress(Exception):  # a storage away for a moment: the next beat
                study.set_user_attr(OWNER_BEAT, time.time())
            if stop.wait(HEARTBEAT_S):
                return

    threading.Thread(target=beat, name="dlx-sweep-owner-heartbeat", daemon=True).start()
    return stop


def _existing_parent(uri: str, reference: str) -> Any:
    from dlx.track.read import open_store

    (run,) = open_store(uri).find([reference])
    if SWEEP not in run.data.tags:
        raise UsageError(f"the run {run.info.run_id} is not a sweep's (it has no {SWEEP} tag)")
    return run


def _parent_run(loaded: LoadedSpec, config: SweepConfig, sweep: Sweep) -> Any:
    from dlx.track import TrackedRun
    from dlx.track.params import flatten_params
    from dlx.track.tags import resolved_spec_text

    tags = {
        SWEEP: shown_storage(config.storage),
        SWEEP_METHOD: sweep.method,
        SWEEP_METRIC: sweep.metric,
        SWEEP_GOAL: goal(sweep),
        SWEEP_TRIALS: str(config.trials),
        RUN_PROCESS: this_process(),  # the sweep's first process (or the one resuming it)
        **({SWEEP_STUDY: config.study} if config.study else {}),
        "mlflow.source.name": str(loaded.document.path.resolve()),
    }
    params = {k: v for k, v in flatten_params(loaded.document.data).items() if k[:6] == "sweep."}
    return TrackedRun(
        loaded.spec.tracking.experiment or loaded.name,
        run_name=f"{loaded.name}-sweep",
        tracking_uri=config.tracking_uri,
        tags=tags,
        params=params,
        spec_text=resolved_spec_text(loaded),
    )


def _end_parent(config: SweepConfig, status: str) -> None:
    import contextlib

    from dlx.track.store import fail_fast

    with contextlib.suppress(Exception), fail_fast():
        _client(config).set_terminated(config.parent_run_id, status=status)


def _requeue(config: SweepConfig, study: Any, *, interrupted: bool) -> list[int]:
    """Enqueue again the trials to rerun: the interrupted ones (FAILED without an error, or
    RUNNING while their process on this machine is gone or their heartbeat lost), or the ones
    that failed on their own (`--retry-failed`). Each new trial carries the old one's number
    (`retry_of`), which then no longer counts."""
    if interrupted:
        _fail_lost_trials(study)
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs[RETRY_OF] for t in trials if RETRY_OF in t.user_attrs}
    again = []
    for trial in trials:
        if trial.number in retried or trial.user_attrs.get(SURPLUS):
            continue
        state = trial.state.name
        if interrupted and state == "RUNNING":
            if not _gone(trial):
                continue  # still running, here or on another machine
            study.tell(trial.number, state=_state("FAIL"), skip_if_finished=True)
        elif state != "FAIL" or (ERROR not in trial.user_attrs) != interrupted:
            continue
        attrs: dict[str, Any] = {RETRY_OF: trial.number}
        run_ids = trial.user_attrs.get(RUN_IDS) or _trial_runs(config, trial.number)
        if interrupted and run_ids:
            attrs[RESUME_RUN] = run_ids[0]
        study.enqueue_trial(trial.params, user_attrs=attrs, skip_if_exists=False)
        again.append(trial.number)
    return again


def _trial_runs(config: SweepConfig, number: int) -> list[str]:
    """The child runs of a trial, found by their tags (a trial killed before its run ended
    has not recorded their ids)."""
    client = _client(config)
    parent = client.get_run(config.parent_run_id)
    found = client.search_runs(
        [parent.info.experiment_id],
        filter_string=(
            f"tags.`{PARENT_RUN}` = '{config.parent_run_id}' and tags.`{TRIAL}` = '{number}'"
        ),
    )
    return [run.info.run_id for run in found]


def _work_in_processes(config: SweepConfig, jobs: int) -> None:
    """`jobs` worker processes (`dlx sweep-worker`), each its share of the CPU's threads and,
    with GPUs, one GPU of its own."""
    gpus = visible_gpus()
    threads = max(1, (os.cpu_count() or 1) // jobs)
    workers = []
    for index in range(jobs):
        env = dict(os.environ)
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = gpus[index % len(gpus)]
            if jobs > len(gpus):  # jobs share a GPU: each takes the memory it needs, not all
                env.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")
        # Seeds far apart: each process adds the trials already there when it starts (`work`),
        # and `seed + index + trials` alone would collide (42 + 1 + 0 == 42 + 0 + 1).
        mine = SweepConfig(
            **{
                **asdict(config),
                "seed": config.seed + WORKER_SEED_STRIDE * index,
                "threads": threads,
                "coordinator": os.getpid(),
            }
        )
        # In the environment, not the command line that every user sees (a storage password).
        env[WORKER_CONFIG] = mine.to_json()
        workers.append(subprocess.Popen([sys.executable, "-m", "dlx", "sweep-worker"], env=env))
    try:
        codes = [worker.wait() for worker in workers]
    except KeyboardInterrupt:
        import signal

        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGINT)
        for worker in workers:
            try:
                worker.wait(timeout=60)
            except subprocess.TimeoutExpired:
                worker.kill()
        raise
    if any(code not in (0,) for code in codes):
        raise DlxError(f"a sweep worker exited with status {max(codes)}; see its output above")


def die_with_coordinator(config: SweepConfig) -> None:
    """Have this `--jobs` worker interrupted (SIGINT: its trial recorded KILLED, rerun on
    `--resume`) when the sweep that started it dies, even by `kill -9` (Linux's
    `PR_SET_PDEATHSIG`; elsewhere, a thread that watches the parent's process id)."""
    import signal
    import threading

    if not config.coordinator:
        return
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGINT)
        if os.getppid() != config.coordinator:  # it died before the call
            os.kill(os.getpid(), signal.SIGINT)
        return

    def watch() -> None:
        while os.getppid() == config.coordinator:
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=watch, name="dlx-coordinator-watch", daemon=True).start()


def visible_gpus() -> list[str]:
    """The GPUs' indices, from `nvidia-smi` (no TensorFlow in this process); none without."""
    import shutil

    if os.environ.get("CUDA_VISIBLE_DEVICES") is not None:
        return [g for g in os.environ["CUDA_VISIBLE_DEVICES"].split(",") if g.strip()]
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        listed = subprocess.run(
            ["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.strip() for line in listed.stdout.splitlines() if line.strip().isdigit()]


def _summary(config: SweepConfig, sweep: Sweep, study: Any) -> SweepResult:
    """The sweep's counted trials (those under way too) and its best."""
    result = SweepResult(config.parent_run_id, shown_storage(config.storage), sweep.metric, "")
    result.goal = goal(sweep)
    for trial in counted(study.get_trials(deepcopy=False)):
        state = {"COMPLETE": "COMPLETE", "PRUNED": "PRUNED", "FAIL": "FAILED"}.get(
            trial.state.name, trial.state.name
        )
        note = trial.user_attrs.get(ERROR, "")
        row = TrialRow(
            trial.number,
            state,
            trial.value if trial.state.name == "COMPLETE" else None,
            dict(trial.params),
            list(trial.user_attrs.get(RUN_IDS, [])),
            trial.duration.total_seconds() if trial.duration else 0.0,
            note,
            len(trial.intermediate_values),
        )
        result.trials.append(row)
    complete = [r for r in result.trials if r.state == "COMPLETE" and r.value is not None]
    if complete:
        pick = max if result.goal == "max" else min
        result.best = pick(complete, key=lambda r: r.value)
        result.best_run_id = result.best.run_ids[0] if result.best.run_ids else None
    return result


def _record_summary(config: SweepConfig, sweep: Sweep, study: Any, result: SweepResult) -> None:
    """On the parent run: how many trials ended how, the best trial (its run id, number and
    value), its spec as `best.yaml`, and the figures `param_importance.png` and
    `parallel_coordinates.png`."""
    from dlx.track.plots import parallel_coordinates_figure, param_importance_figure
    from dlx.track.read import open_store
    from dlx.track.store import ui_hint

    client, parent_id = _client(config), config.parent_run_id
    states = [row.state.lower() for row in result.trials]
    for state in ("complete", "pruned", "failed"):
        client.log_metric(parent_id, f"trials_{state}", states.count(state))
    parent = client.get_run(parent_id)
    result.ui_hint = ui_hint(config.tracking_uri, parent.info.experiment_id, parent_id)
    if result.best is None or result.best_run_id is None:
        return
    client.log_metric(parent_id, f"best_{sweep.metric}", float(result.best.value or 0.0))
    client.set_tag(parent_id, SWEEP_BEST_RUN, result.best_run_id)
    client.set_tag(parent_id, SWEEP_BEST_TRIAL, str(result.best.number))
    client.log_text(
        parent_id, open_store(config.tracking_uri).spec_text(result.best_run_id), "best.yaml"
    )
    importances = _importances(study)
    if importances:
        figure = param_importance_figure(importances, sweep.metric)
        client.log_figure(parent_id, figure, "param_importance.png")
    finished = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    rows = [(dict(t.params), float(t.value)) for t in finished]
    figure = parallel_coordinates_figure(rows, list(sweep.params), sweep.metric)
    client.log_figure(parent_id, figure, "parallel_coordinates.png")


def _importances(study: Any) -> dict[str, float]:
    """fANOVA importances of the params over the finished trials; empty when there are too
    few trials or values to say (fewer than two, or a single value each)."""
    import warnings

    import optuna

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "too few trials": the figure says it as it is
            return dict(optuna.importance.get_param_importances(study))
    except (ValueError, RuntimeError):
        return {}
