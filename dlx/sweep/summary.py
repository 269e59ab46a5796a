"""What a sweep reports: its counted trials and the best (`summary`), read while it runs
(`watch`, the live table's), and recorded on its parent run at its end (`record_summary`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dlx.spec.schema import Sweep
from dlx.sweep.options import SweepConfig, SweepResult, TrialRow
from dlx.sweep.space import goal
from dlx.sweep.study import ERROR, RUN_IDS, counted, open_study, shown_storage
from dlx.sweep.trials import client_of
from dlx.track.tags import SWEEP_BEST_RUN, SWEEP_BEST_TRIAL


def summary(config: SweepConfig, sweep: Sweep, study: Any) -> SweepResult:
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
    complete = [
        (r.value, r) for r in result.trials if r.state == "COMPLETE" and r.value is not None
    ]
    if complete:
        pick = max if result.goal == "max" else min
        result.best = pick(complete, key=lambda scored: scored[0])[1]
        result.best_run_id = result.best.run_ids[0] if result.best.run_ids else None
    return result


def record_summary(config: SweepConfig, sweep: Sweep, study: Any, result: SweepResult) -> None:
    """On the parent run: how many trials ended how, the best trial (its run id, number and
    value), its spec as `best.yaml`, and the figures `param_importance.png` and
    `parallel_coordinates.png`."""
    from dlx.track.plots import parallel_coordinates_figure, param_importance_figure
    from dlx.track.read import open_store
    from dlx.track.store import ui_hint

    client, parent_id = client_of(config), config.parent_run_id
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


def watch(
    config: SweepConfig,
    sweep: Sweep,
    on_progress: Callable[[SweepResult], None],
    every: float = 1.0,
) -> Any:
    """A thread that reads the study every `every` seconds and gives `on_progress` all its
    trials (every process's, those running too), until the event it returns is set."""
    import threading

    stop = threading.Event()
    study = open_study(config, sweep, create=False)

    def show() -> None:
        import contextlib

        from sqlalchemy.exc import SQLAlchemyError

        # The storage busy a moment (SQLite locked): the table is redrawn the next time.
        with contextlib.suppress(SQLAlchemyError):
            on_progress(summary(config, sweep, study))

    def poll() -> None:
        while not stop.wait(every):
            show()
        show()

    threading.Thread(target=poll, name="dlx-sweep-watch", daemon=True).start()
    return stop
