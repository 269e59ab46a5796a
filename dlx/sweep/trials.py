"""A sweep's trials: each process asks the study for one, trains its runs (one per repeat;
pruned, failed or resumed), and tells the study its result, until the sweep has its trials
(`work`)."""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dlx.errors import DlxError, SpecError, UsageError, no_space_left
from dlx.proc import signals
from dlx.spec import LoadedSpec
from dlx.spec.schema import Sweep
from dlx.sweep.options import SweepConfig, TrialRow
from dlx.sweep.space import sampler, suggest, sweep_of, trial_spec
from dlx.sweep.study import (
    ERROR,
    PROCESS,
    RESUME_RUN,
    RETRY_OF,
    RUN_IDS,
    SURPLUS,
    counted,
    heartbeat,
    heartbeat_warnings_off,
    open_study,
    second_retry,
    trial_state,
)
from dlx.track.tags import PARENT_RUN, PRUNED, REPEAT, RUN_NAME, TRIAL
from dlx.train.resume import this_process

if TYPE_CHECKING:
    from dlx.train.progress import ProgressListener


def work(
    config: SweepConfig,
    *,
    progress: ProgressListener | None = None,
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
    sweep = sweep_of(config)
    study = open_study(config, sweep, create=False)
    # Seeded by the trials already there too: a resumed or joining process draws anew.
    study.sampler = sampler(sweep, config.seed + len(study.trials))
    while True:
        signals.check()  # a stop whose exception a garbage collector's callback lost
        trials = study.get_trials(deepcopy=False)
        waiting = any(t.state.name == "WAITING" for t in trials)
        if not waiting and len(counted(trials)) >= config.trials:
            return
        with heartbeat_warnings_off(), _one_asks_at_a_time(config):
            trial = study.ask()
            trial.set_user_attr(PROCESS, this_process())
        trials = study.get_trials(deepcopy=False)
        if second_retry(trial, trials):
            trial.set_user_attr(SURPLUS, True)
            study.tell(trial, state=trial_state("FAIL"))
            continue
        earlier = [t for t in counted(trials) if t.number < trial.number]
        if len(earlier) >= config.trials and RETRY_OF not in trial.user_attrs:
            trial.set_user_attr(SURPLUS, True)
            study.tell(trial, state=trial_state("FAIL"))
            return
        row = _run_trial(config, loaded, sweep, study, trial, progress)
        if on_trial is not None:
            on_trial(row)


def _one_asks_at_a_time(config: SweepConfig) -> contextlib.AbstractContextManager[Any]:
    """With an SQLite storage, one process of this machine at a time asks for a trial (holding
    `optuna.db.lock` beside the storage, removed when done: `lock_beside`). Optuna takes a
    waiting (enqueued) trial with `SELECT ... FOR UPDATE`, which SQLite ignores: two processes
    asking at once could both take the same one (the `--jobs` of a resumed sweep both resuming
    one interrupted trial's run). PostgreSQL locks the row itself."""
    from dlx.track.store import lock_beside, sqlite_file

    database = sqlite_file(config.storage)
    return contextlib.nullcontext() if database is None else lock_beside(database)


def _run_trial(
    config: SweepConfig,
    base: LoadedSpec,
    sweep: Sweep,
    study: Any,
    trial: Any,
    progress: ProgressListener | None,
) -> TrialRow:
    """Train a trial's runs (one per repeat), then tell the study its result."""
    started = time.perf_counter()
    values = {dotted: suggest(trial, dotted, p) for dotted, p in sweep.params.items()}
    row = TrialRow(trial.number, "COMPLETE", None, dict(trial.params), [], 0.0)
    try:
        with heartbeat(study, trial):
            scores = _train_repeats(config, base, sweep, trial, values, row, progress)
    except KeyboardInterrupt:
        study.tell(trial, state=trial_state("FAIL"))  # without an error: interrupted
        raise
    except Exception as exc:  # a failed trial is recorded (its run FAILED), the sweep goes on
        from dlx.train.runner import TrainingFailed

        if no_space_left(exc) is not None:  # every trial after it would fail alike
            study.tell(trial, state=trial_state("FAIL"))  # interrupted: a `--resume` reruns it
            raise

        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if isinstance(exc, SpecError):
            message = exc.render().splitlines()[0]
        trial.set_user_attr(ERROR, message)
        row.state, row.note = "FAILED", message
        if isinstance(exc, TrainingFailed):  # its run is recorded FAILED
            found = trial_runs(config, trial.number)
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
        study.tell(trial, state=trial_state("PRUNED" if row.state == "PRUNED" else "FAIL"))
    return _done(row, started)


def _train_repeats(
    config: SweepConfig,
    base: LoadedSpec,
    sweep: Sweep,
    trial: Any,
    values: dict[str, Any],
    row: TrialRow,
    progress: ProgressListener | None,
) -> list[float]:
    """Train a trial's runs, one per seed; each one's metric (none when the first is pruned,
    with `row.state` PRUNED)."""
    from dlx.sweep.pruning import PruneTrial

    tags = {PARENT_RUN: config.parent_run_id, TRIAL: str(trial.number)}
    scores = []
    for repeat in range(sweep.repeats):
        if sweep.repeats > 1:
            values["seed"] = base.spec.seed + repeat
            tags[REPEAT] = str(repeat)
        seed = repeat if sweep.repeats > 1 else None
        tags[RUN_NAME] = trial_run_name(base.name, trial.number, seed)
        pruning = PruneTrial(trial, sweep.metric) if repeat == 0 else None
        result = _train_trial(config, trial, values, tags, pruning, progress)
        row.run_ids.append(result.run_id)
        trial.set_user_attr(RUN_IDS, row.run_ids)
        if pruning is not None and pruning.pruned_after is not None:
            epoch = pruning.pruned_after + 1  # counted from 1, as training shows epochs
            _set_tag(config, result.run_id, PRUNED, str(epoch))
            row.state, row.note = "PRUNED", f"pruned after epoch {epoch}"
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
        run_name=trial_run_name(base.name, trial.number),
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


def trial_run_name(name: str, number: int, repeat: int | None = None) -> str:
    """The name of a trial's run: the spec's name and the trial's number (`digits-3`); with
    several seeds (`sweep.repeats`), each run's repeat, from 0 as its `dlx.sweep.repeat` tag
    counts (`digits-3-seed1`)."""
    return f"{name}-{number}" + ("" if repeat is None else f"-seed{repeat}")


def _done(row: TrialRow, started: float) -> TrialRow:
    row.seconds = time.perf_counter() - started
    return row


def _train_trial(
    config: SweepConfig,
    trial: Any,
    values: dict[str, Any],
    tags: dict[str, str],
    pruning: Any,
    progress: ProgressListener | None,
) -> Any:
    """Train one run of a trial: a new child run, or the interrupted trial's run resumed."""
    from dlx.train.runner import train

    callbacks = [pruning] if pruning is not None else []
    previous = trial.user_attrs.get(RESUME_RUN)
    if previous and REPEAT not in tags:
        resumed = _resumable(config, previous)
        if resumed is not None:
            loaded, point = resumed
            return train(loaded, progress=progress, tags=tags, resume=point, callbacks=callbacks)
        _end_abandoned(config, previous)
    loaded = trial_spec(config.spec, config.overrides, values)
    return train(
        loaded,
        progress=progress,
        tracking_uri=config.tracking_uri,
        tags=tags,
        callbacks=callbacks,
    )


def _end_abandoned(config: SweepConfig, run_id: str) -> None:
    """Record KILLED an interrupted trial's run that is trained again instead of resumed (its
    checkpoints were on a machine that is gone), if nothing recorded its end."""
    client = client_of(config)
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


def trial_runs(config: SweepConfig, number: int) -> list[str]:
    """The child runs of a trial, found by their tags (a trial killed before its run ended
    has not recorded their ids)."""
    client = client_of(config)
    parent = client.get_run(config.parent_run_id)
    found = client.search_runs(
        [parent.info.experiment_id],
        filter_string=(
            f"tags.`{PARENT_RUN}` = '{config.parent_run_id}' and tags.`{TRIAL}` = '{number}'"
        ),
    )
    return [run.info.run_id for run in found]


def client_of(config: SweepConfig) -> Any:
    """The sweep's MLflow store, to write to."""
    from dlx.track.store import open_for_writing

    return open_for_writing(config.tracking_uri)


def _set_tag(config: SweepConfig, run_id: str, key: str, value: str) -> None:
    client_of(config).set_tag(run_id, key, value)


def _log_metrics(config: SweepConfig, run_id: str, metrics: dict[str, float]) -> None:
    client = client_of(config)
    for key, value in metrics.items():
        client.log_metric(run_id, key, value)
