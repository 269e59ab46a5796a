"""A sweep's Optuna study: its storage, opening or creating it, the heartbeats of its trials
and of the process that owns the sweep, and which of its trials count.

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
import re
import threading
import time
import warnings
from pathlib import Path
from typing import Any

from dlx.errors import DlxError, UsageError
from dlx.proc import signals
from dlx.spec.schema import Sweep
from dlx.sweep.options import SweepConfig
from dlx.sweep.space import goal, pruner, sampler, sweep_of

# Trial user attributes, the sweep's own bookkeeping in the study.
RETRY_OF = "retry_of"
RESUME_RUN = "resume_run"
PROCESS = "process"
SURPLUS = "surplus"
ERROR = "error"
RUN_IDS = "run_ids"
STORAGE_ATTEMPTS = 5
"""Tries to open a new Optuna database that other processes are creating at the same moment."""
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


def default_storage(tracking_uri: str) -> str:
    """An SQLite file `optuna.db` beside an SQLite MLflow store, else in the working folder."""
    from dlx.track.store import sqlite_file

    local = sqlite_file(tracking_uri)
    folder = local.parent if local is not None else Path.cwd()
    return f"sqlite:///{folder / 'optuna.db'}"


def shown_storage(storage: str) -> str:
    """A storage URL with its password hidden, to record and print."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", storage)


def open_storage(url: str) -> Any:
    """Optuna's storage at `url` (PostgreSQL through whichever driver is installed; SQLite
    waiting up to a minute for a lock, as several processes share it)."""
    import optuna
    from sqlalchemy.exc import IntegrityError, ProgrammingError, SQLAlchemyError

    from dlx.track.store import mlflow_uri

    options = {"connect_args": {"timeout": 60}} if url.startswith("sqlite:") else {}
    try:
        for attempt in range(STORAGE_ATTEMPTS):
            try:
                with heartbeat_warnings_off():
                    return optuna.storages.RDBStorage(
                        mlflow_uri(url),
                        engine_kwargs=options,
                        heartbeat_interval=HEARTBEAT_S,
                        grace_period=HEARTBEAT_GRACE_S,
                    )
            except (IntegrityError, ProgrammingError) as exc:
                # Processes starting at once on a new database both create Optuna's tables;
                # PostgreSQL refuses the second's (a duplicate key of its catalog, or "type
                # studydirection already exists"): the tables are there, or soon will be.
                duplicate = isinstance(exc, IntegrityError) or "already exists" in str(exc)
                if not duplicate or attempt == STORAGE_ATTEMPTS - 1:
                    raise
                time.sleep(1.0)
    except (SQLAlchemyError, ImportError, ValueError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        hint = " (its password is not recorded: give --storage URL)" if "***@" in url else ""
        raise DlxError(
            f"cannot open the Optuna storage {shown_storage(url)}: {reason}{hint}"
        ) from None


@contextlib.contextmanager
def heartbeat_warnings_off() -> Any:
    """Optuna's heartbeat is experimental, and made for `Study.optimize`, which warns: dlx asks
    and tells itself, and beats while a trial trains (`heartbeat`)."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
        yield


def fail_lost_trials(study: Any) -> None:
    """Tell FAILED (interrupted: no error) the RUNNING trials whose heartbeat was lost."""
    import optuna

    with heartbeat_warnings_off():
        optuna.storages.fail_stale_trials(study)


def open_study(config: SweepConfig, sweep: Sweep, *, create: bool) -> Any:
    """The sweep's Optuna study, created (`create`) or loaded, with its sampler and pruner."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    drawn = sampler(sweep, config.seed)
    storage = open_storage(config.storage)
    if create:
        return optuna.create_study(
            storage=storage,
            study_name=config.study_name,
            direction="maximize" if goal(sweep) == "max" else "minimize",
            sampler=drawn,
            pruner=pruner(sweep),
        )
    try:
        return optuna.load_study(
            study_name=config.study_name,
            storage=storage,
            sampler=drawn,
            pruner=pruner(sweep),
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
        if t.number not in retried and not t.user_attrs.get(SURPLUS) and not second_retry(t, trials)
    ]


def second_retry(trial: Any, trials: list[Any]) -> bool:
    """Whether an earlier trial already retries the trial that `trial` retries."""
    of = trial.user_attrs.get(RETRY_OF)
    return of is not None and any(
        t.number < trial.number and t.user_attrs.get(RETRY_OF) == of for t in trials
    )


def trial_gone(trial: Any) -> bool:
    """Whether a RUNNING trial's process is known to be gone from this machine (one that never
    said which it is, `ASK_GRACE_S` after asking for it, counts as gone: killed in between)."""
    from datetime import datetime

    from dlx.train.resume import gone

    process = trial.user_attrs.get(PROCESS, "")
    if not process:
        return (datetime.now() - trial.datetime_start).total_seconds() > ASK_GRACE_S
    return gone(process)


def trial_state(name: str) -> Any:
    """Optuna's `TrialState` of that name (`FAIL`, `PRUNED`...)."""
    from optuna.trial import TrialState

    return TrialState[name]


def wait_for_others(config: SweepConfig, every: float = 2.0) -> None:
    """Wait until no trial of the sweep runs in another process that is still there (on this
    machine, by its pid; on another, by its heartbeat)."""
    study = open_study(config, sweep_of(config), create=False)
    while True:
        signals.check()
        fail_lost_trials(study)
        trials = study.get_trials(deepcopy=False)
        if not any(t.state.name == "RUNNING" and not trial_gone(t) for t in trials):
            return
        time.sleep(every)


@contextlib.contextmanager
def heartbeat(study: Any, trial: Any) -> Any:
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


def beat_as_owner(config: SweepConfig, sweep: Sweep) -> threading.Event:
    """A thread that records in the study, every `HEARTBEAT_S`, that this process owns the
    sweep and is alive (`OWNER_BEAT`), until the event it returns is set."""
    stop = threading.Event()
    study = open_study(config, sweep, create=False)

    def beat() -> None:
        while True:
            with contextlib.suppress(Exception):  # a storage away for a moment: the next beat
                study.set_user_attr(OWNER_BEAT, time.time())
            if stop.wait(HEARTBEAT_S):
                return

    threading.Thread(target=beat, name="dlx-sweep-owner-heartbeat", daemon=True).start()
    return stop
