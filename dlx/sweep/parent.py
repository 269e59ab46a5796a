"""A sweep's process: it starts a sweep (its parent run), resumes, joins or takes one over,
works its trials (itself or in `--jobs` workers), and ends it with its summary.

Optuna is the engine and its storage the only state. Without `--storage` the study lives in
an SQLite file beside the MLflow store (`optuna.db`), named by the parent run's id: each
`dlx sweep` is a new sweep. With `--storage URL` (a database several machines share) the study
is named from the spec (`study_name`): the first process to create it starts the parent run
and records its id in the study; the others, started with the same command, join it (a study
that has all its trials is done: the command then starts `<name>-2`, `-3`...). Every process
that works the study (the `--jobs` of one machine, the machines that join) runs the same loop
against that storage: ask a trial, train it as a complete dlx run, tell its result, until the
sweep has its trials.
"""

from __future__ import annotations

import time
import zlib
from typing import Any

from dlx.errors import DlxError, Interrupted, UsageError, no_space_left, no_space_message
from dlx.spec import LoadedSpec
from dlx.spec.schema import Sweep
from dlx.sweep.options import SweepConfig, SweepOptions, SweepResult
from dlx.sweep.space import goal, total_trials
from dlx.sweep.study import (
    ERROR,
    HEARTBEAT_GRACE_S,
    OWNER_BEAT,
    PARENT,
    RESUME_RUN,
    RETRY_OF,
    RUN_IDS,
    SURPLUS,
    beat_as_owner,
    counted,
    default_storage,
    fail_lost_trials,
    open_storage,
    open_study,
    shown_storage,
    trial_gone,
    trial_state,
    wait_for_others,
)
from dlx.sweep.summary import record_summary, summary, watch
from dlx.sweep.trials import client_of, trial_runs, work
from dlx.sweep.workers import visible_gpus, work_in_processes
from dlx.track.tags import PROCESS as RUN_PROCESS
from dlx.track.tags import (
    SWEEP,
    SWEEP_GOAL,
    SWEEP_METHOD,
    SWEEP_METRIC,
    SWEEP_STUDY,
    SWEEP_TRIALS,
)
from dlx.train.resume import this_process


def run_sweep(
    loaded: LoadedSpec, overrides: list[str] | tuple[str, ...], options: SweepOptions
) -> SweepResult:
    """Run a sweep, or resume or join one, to its end, as `options` say; see `dlx.api.sweep`."""
    from dlx.track.store import check_store, resolve_tracking_uri

    trials, storage, resume, join = options.trials, options.storage, options.resume, options.join
    jobs = options.jobs if options.jobs is not None else max(1, len(visible_gpus()))
    sweep = loaded.spec.sweep
    assert sweep is not None
    uri = resolve_tracking_uri(loaded.spec.tracking.uri or options.tracking_uri)
    check_store(uri)  # before the study's storage is made: a store that cannot take the runs
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
        open_storage(storage)  # a storage that cannot be used fails here, before any run
        joined = _claim_study(config, sweep, loaded) if named else None
        if joined is not None:
            config.parent_run_id = join = joined
        else:
            run = _parent_run(loaded, config, sweep)
            run.start()
            config.parent_run_id = run.run_id
            try:
                study = open_study(config, sweep, create=not named)
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
    if options.on_start is not None:
        options.on_start(config.parent_run_id, shown_storage(storage), count, how)
    owner = join is None
    if not owner:
        # Processes that join at once find the same trials there: their own identity keeps
        # their samplers apart (`work` seeds with the trials already there).
        config.seed += zlib.crc32(this_process().encode())
    on_progress = options.on_progress
    watching = watch(config, sweep, on_progress) if on_progress is not None else None
    beating = beat_as_owner(config, sweep) if owner else None
    try:
        study = open_study(config, sweep, create=False)
        if resume is not None:
            _requeue(config, study, interrupted=True)
        if options.retry_failed:
            _requeue(config, study, interrupted=False)
        while True:
            if jobs <= 1:
                work(config, progress=options.progress, on_trial=options.on_trial)
            else:
                work_in_processes(config, jobs)
            if not owner:
                # The process that owns the sweep lost without a word (a sweep stopped on
                # purpose stays stopped): this one ends it.
                if _owner_gone(config, sweep) != "lost":
                    break
                owner = True
                _parent_run(loaded, config, sweep).reopen(config.parent_run_id)
                beating = beat_as_owner(config, sweep)
            # The summary counts the trials that joined processes are finishing. Those that end
            # interrupted meanwhile (a process stopped, or the jobs of a killed sweep that this
            # one resumes, still stopping when it began) are rerun: the sweep has N trials.
            wait_for_others(config)
            if not _requeue(config, study, interrupted=True):
                break
        result = summary(config, sweep, study)
        if owner or result.best is not None:
            record_summary(config, sweep, study, result)
    except KeyboardInterrupt as exc:
        stopped = exc if isinstance(exc, Interrupted) else Interrupted()
        if owner:
            _end_parent(config, "KILLED")
        raise type(stopped)(
            f"{stopped.cause}: sweep {config.parent_run_id} recorded KILLED; continue it with "
            f"`dlx sweep {loaded.document.path} --resume {config.parent_run_id}`"
        ) from None
    except BaseException as exc:
        if owner:
            _end_parent(config, "FAILED")
        where = no_space_left(exc)
        if where is None:
            raise
        then = f"`dlx sweep {loaded.document.path} --resume {config.parent_run_id}` goes on"
        raise DlxError(no_space_message(where, then)) from exc
    finally:
        for thread in (watching, beating):
            if thread is not None:
                thread.set()
    if owner:
        _end_parent(config, "FINISHED")
    return result


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
            open_study(config, sweep, create=True)
            return None
        except optuna.exceptions.DuplicatedStudyError:
            pass
        study = open_study(config, sweep, create=False)
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

    run = client_of(config).get_run(config.parent_run_id)
    if run.info.status != "RUNNING":
        return "stopped" if run.info.status in ("KILLED", "FAILED") else ""
    if gone(run.data.tags.get(RUN_PROCESS, "")):
        return "lost"
    beat = open_study(config, sweep, create=False).user_attrs.get(OWNER_BEAT)
    silent = beat is not None and time.time() - float(beat) > HEARTBEAT_GRACE_S
    return "lost" if silent else ""


def _existing_parent(uri: str, reference: str) -> Any:
    from dlx.track.read import open_store

    (run,) = open_store(uri).find([reference])
    if SWEEP not in run.data.tags:
        raise UsageError(f"the run {run.info.run_id} is not a sweep's (it has no {SWEEP} tag)")
    return run


def _parent_run(loaded: LoadedSpec, config: SweepConfig, sweep: Sweep) -> Any:
    from dlx.track import TrackedRun
    from dlx.track.params import flatten_params
    from dlx.track.tags import USER, resolved_spec_text, user_name

    tags = {
        SWEEP: shown_storage(config.storage),
        SWEEP_METHOD: sweep.method,
        SWEEP_METRIC: sweep.metric,
        SWEEP_GOAL: goal(sweep),
        SWEEP_TRIALS: str(config.trials),
        RUN_PROCESS: this_process(),  # the sweep's first process (or the one resuming it)
        **({SWEEP_STUDY: config.study} if config.study else {}),
        "mlflow.source.name": str(loaded.document.path.resolve()),
        USER: user_name(),  # the UI's "Created by", as on its trials' runs
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
        client_of(config).set_terminated(config.parent_run_id, status=status)


def _requeue(config: SweepConfig, study: Any, *, interrupted: bool) -> list[int]:
    """Enqueue again the trials to rerun: the interrupted ones (FAILED without an error, or
    RUNNING while their process on this machine is gone or their heartbeat lost), or the ones
    that failed on their own (`--retry-failed`). Each new trial carries the old one's number
    (`retry_of`), which then no longer counts."""
    if interrupted:
        fail_lost_trials(study)
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs[RETRY_OF] for t in trials if RETRY_OF in t.user_attrs}
    again = []
    for trial in trials:
        if trial.number in retried or trial.user_attrs.get(SURPLUS):
            continue
        state = trial.state.name
        if interrupted and state == "RUNNING":
            if not trial_gone(trial):
                continue  # still running, here or on another machine
            study.tell(trial.number, state=trial_state("FAIL"), skip_if_finished=True)
        elif state != "FAIL" or (ERROR not in trial.user_attrs) != interrupted:
            continue
        attrs: dict[str, Any] = {RETRY_OF: trial.number}
        run_ids = trial.user_attrs.get(RUN_IDS) or trial_runs(config, trial.number)
        if interrupted and run_ids:
            attrs[RESUME_RUN] = run_ids[0]
        study.enqueue_trial(trial.params, user_attrs=attrs, skip_if_exists=False)
        again.append(trial.number)
    return again
