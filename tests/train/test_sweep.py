"""`dlx sweep`: an Optuna study recorded as one MLflow parent run with a child run per trial.

Every test runs the real command in a subprocess against a real MLflow store and a real Optuna
storage (SQLite, or a PostgreSQL server the test starts), on a tiny model of the digits.
"""

import json
import signal
from pathlib import Path

import optuna
import pytest
import yaml

from tests.train.processes import BOUND_S, dlx, kill_group, start, wait_for
from tests.train.test_resume import runs, store

pytestmark = pytest.mark.slow  # every test here trains

TINY = {
    "version": 1,
    "name": "tiny",
    "seed": 3,
    "data": {"source": {"sklearn": "digits"}, "validation_split": 0.2},
    "model": {
        "layers": [
            {"input": {"shape": [8, 8, 1]}},
            "flatten",
            {"dense": {"units": 16, "activation": "relu"}},
            {"dense": {"units": 10, "activation": "softmax"}},
        ]
    },
    "train": {
        "epochs": 2,
        "batch_size": 64,
        "optimizer": {"adam": {"learning_rate": 0.01}},
        "loss": "sparse_categorical_crossentropy",
        "metrics": ["accuracy"],
    },
    "tracking": {"log_model": False},
}


def write_spec(folder: Path, sweep: dict, **changes) -> Path:
    spec = {**TINY, **changes, "sweep": sweep}
    path = folder / "sweep.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def parent_and_children(folder: Path):
    found = runs(store(folder))
    parents = [r for r in found if "dlx.sweep" in r.data.tags]
    children = [r for r in found if "mlflow.parentRunId" in r.data.tags]
    return parents, children


def study(folder: Path, parent_id: str, storage: str | None = None):
    return optuna.load_study(
        study_name=parent_id, storage=storage or f"sqlite:///{folder / 'optuna.db'}"
    )


def counted(trials):
    retried = {t.user_attrs["retry_of"] for t in trials if "retry_of" in t.user_attrs}
    return [t for t in trials if t.number not in retried and not t.user_attrs.get("surplus")]


LEARNING_RATE = "train.optimizer.adam.learning_rate"


def test_a_sweep_is_one_parent_run_with_a_child_run_per_trial_and_its_best_spec_trains(tmp_path):
    spec = write_spec(
        tmp_path,
        {
            "metric": "val_accuracy",
            "method": "random",
            "trials": 3,
            "params": {
                LEARNING_RATE: {"log_uniform": [1e-4, 3e-2]},
                "model.layers.2.dense.units": {"choice": [8, 32]},
            },
        },
    )
    done = dlx("sweep", str(spec), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]

    (parent,), children = parent_and_children(tmp_path)
    parent_id = parent.info.run_id
    assert parent.info.status == "FINISHED"
    assert len(children) == 3
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent_id}
    assert sorted(c.data.tags["dlx.sweep.trial"] for c in children) == ["0", "1", "2"]
    for child in children:  # each trial is a complete dlx run with its values as params
        assert child.info.status == "FINISHED"
        assert "val_accuracy" in child.data.metrics
        assert child.data.params["model.layers.2.dense.units"] in ("8", "32")
    tags = parent.data.tags
    assert (tags["dlx.sweep.method"], tags["dlx.sweep.metric"]) == ("random", "val_accuracy")
    best = max(children, key=lambda c: c.data.metrics["val_accuracy"])
    assert tags["dlx.sweep.best_run"] == best.info.run_id
    assert parent.data.metrics["best_val_accuracy"] == best.data.metrics["val_accuracy"]
    client = store(tmp_path)
    artifacts = {a.path for a in client.list_artifacts(parent_id)}
    assert {"best.yaml", "param_importance.png", "parallel_coordinates.png"} <= artifacts

    # best.yaml is the best trial's resolved spec, without the sweep: it trains as written.
    best_yaml = Path(client.download_artifacts(parent_id, "best.yaml", str(tmp_path)))
    assert "sweep" not in yaml.safe_load(best_yaml.read_text())
    trained = dlx("train", str(best_yaml), cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert "ignores it" not in trained.stderr
    reproduced = dlx("reproduce", best.info.run_id, cwd=tmp_path)
    assert reproduced.returncode == 0, reproduced.stderr[-3000:] + reproduced.stdout[-3000:]

    # compare SWEEP: its trials, best first, the swept values among the columns.
    compared = dlx("compare", parent_id[:8], "--format", "json", cwd=tmp_path)
    assert compared.returncode == 0, compared.stderr
    listed = json.loads(compared.stdout)
    values = [r["metrics"]["val_accuracy"] for r in listed]
    assert len(listed) == 3 and values == sorted(values, reverse=True)
    assert LEARNING_RATE in listed[0]["params"]

    # dlx runs: the trials right under their parent.
    listing = dlx("runs", "--format", "json", cwd=tmp_path)
    rows = json.loads(listing.stdout)
    at = [r["run_id"] for r in rows].index(parent_id)
    assert [r["parent_run_id"] for r in rows[at + 1 : at + 4]] == [parent_id] * 3


def test_dlx_train_trains_the_spec_as_written_and_says_the_sweep_is_ignored(tmp_path):
    spec = write_spec(
        tmp_path,
        {"metric": "val_accuracy", "params": {LEARNING_RATE: {"choice": [0.01, 0.02]}}},
        train={**TINY["train"], "epochs": 1},
    )
    done = dlx("train", str(spec), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "sweep: section; dlx train trains the spec as written and ignores it" in done.stderr
    (run,) = runs(store(tmp_path))
    assert run.data.params[LEARNING_RATE] == "0.01"


def test_pruning_stops_diverging_trials_early_and_compare_shows_them(tmp_path):
    # Grid order is fixed by the seed: good learning rates first, then ones that diverge.
    spec = write_spec(
        tmp_path,
        {
            "metric": "val_accuracy",
            "method": "grid",
            "params": {LEARNING_RATE: {"choice": [0.01, 0.02, 30.0, 60.0]}},
            "prune": {"median": {"warmup_epochs": 0, "startup_trials": 1}},
        },
        train={**TINY["train"], "epochs": 4, "on_nan": "continue"},
    )
    done = dlx("sweep", str(spec), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    (parent,), children = parent_and_children(tmp_path)
    pruned = [c for c in children if "dlx.pruned" in c.data.tags]
    assert pruned, [c.data.metrics.get("val_accuracy") for c in children]
    for child in pruned:  # stopped early, recorded with its metrics so far
        steps = store(tmp_path).get_metric_history(child.info.run_id, "val_accuracy")
        assert len(steps) == int(child.data.tags["dlx.pruned"]) + 1 < 4
        assert child.info.status == "FINISHED"
    states = [t.state.name for t in study(tmp_path, parent.info.run_id).trials]
    assert states.count("PRUNED") == len(pruned)
    compared = dlx("compare", parent.info.run_id, "--format", "json", cwd=tmp_path)
    assert [r["status"] for r in json.loads(compared.stdout)].count("PRUNED") == len(pruned)


def test_two_jobs_run_the_trials_in_two_processes(tmp_path):
    spec = write_spec(
        tmp_path,
        {
            "metric": "val_loss",
            "method": "random",
            "trials": 4,
            "params": {LEARNING_RATE: {"log_uniform": [1e-3, 3e-2]}},
        },
    )
    done = dlx("sweep", str(spec), "--jobs", "2", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    (parent,), children = parent_and_children(tmp_path)
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["dlx.sweep.goal"] == "min"  # a loss
    assert sorted(c.data.tags["dlx.sweep.trial"] for c in children) == ["0", "1", "2", "3"]
    assert len({c.data.tags["dlx.process"] for c in children}) == 2
    trials = study(tmp_path, parent.info.run_id).trials
    assert [t.state.name for t in counted(trials)] == ["COMPLETE"] * 4


def test_a_trial_that_raises_is_a_failed_child_run_and_retry_failed_reruns_only_it(tmp_path):
    # A checkpoint callback that cannot write: that trial raises in fit, after validation.
    unwritable = [{"model_checkpoint": {"filepath": "/proc/dlx-none/model.keras"}}]
    spec = write_spec(
        tmp_path,
        {
            "metric": "val_accuracy",
            "method": "grid",
            "params": {"train.callbacks": {"choice": [[], unwritable]}},
        },
        train={**TINY["train"], "epochs": 1, "callbacks": []},
    )
    done = dlx("sweep", str(spec), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]  # the sweep goes on
    (parent,), children = parent_and_children(tmp_path)
    by_status = {c.info.status: c for c in children}
    assert sorted(by_status) == ["FAILED", "FINISHED"]
    failed = by_status["FAILED"]
    checkpoint = "train.callbacks.0.model_checkpoint.filepath"
    assert checkpoint in failed.data.params
    client = store(tmp_path)
    assert "traceback.txt" in {a.path for a in client.list_artifacts(failed.info.run_id)}
    assert "FAILED" in done.stdout

    again = dlx("sweep", str(spec), "--resume", parent.info.run_id, "--retry-failed", cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    _, children = parent_and_children(tmp_path)
    assert len(children) == 3  # only the failed trial ran again, with the same values
    statuses = sorted(c.info.status for c in children)
    assert statuses == ["FAILED", "FAILED", "FINISHED"]  # it fails again, as it must
    rerun = [
        c for c in children if c.info.run_id != failed.info.run_id and c.info.status == "FAILED"
    ]
    assert rerun[0].data.params[checkpoint] == failed.data.params[checkpoint]
    trials = study(tmp_path, parent.info.run_id).trials
    assert len(counted(trials)) == 2
    assert trials[-1].user_attrs["retry_of"] == int(failed.data.tags["dlx.sweep.trial"])


def test_repeats_train_each_configuration_with_several_seeds_and_score_their_mean(tmp_path):
    spec = write_spec(
        tmp_path,
        {
            "metric": "val_accuracy",
            "method": "grid",
            "params": {LEARNING_RATE: {"choice": [0.01, 0.02]}},
            "repeats": 2,
        },
        train={**TINY["train"], "epochs": 1},
    )
    done = dlx("sweep", str(spec), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    (parent,), children = parent_and_children(tmp_path)
    assert len(children) == 4
    for trial in study(tmp_path, parent.info.run_id).trials:
        runs_of = [c for c in children if c.data.tags["dlx.sweep.trial"] == str(trial.number)]
        assert sorted(c.data.params["seed"] for c in runs_of) == ["3", "4"]
        scores = [c.data.metrics["val_accuracy"] for c in runs_of]
        assert trial.value == pytest.approx(sum(scores) / 2)
        assert runs_of[0].data.metrics["val_accuracy_std"] == pytest.approx(
            trial.user_attrs["val_accuracy_std"]
        )


@pytest.mark.timeout(3 * BOUND_S)
def test_kill_9_then_resume_ends_with_exactly_the_trials_asked(tmp_path):
    spec = write_spec(
        tmp_path,
        {
            "metric": "val_accuracy",
            "method": "random",
            "trials": 3,
            "params": {LEARNING_RATE: {"log_uniform": [1e-3, 3e-2]}},
        },
        train={**TINY["train"], "epochs": 30},
    )
    job = start("sweep", str(spec), cwd=tmp_path)
    try:
        # Killed while its second trial trains (its run open, some epochs done).
        wait_for(
            lambda: (
                len(parent_and_children(tmp_path)[1]) >= 2
                and any(tmp_path.glob("dlx-checkpoints/*/metrics.jsonl"))
            ),
            "a second trial under way",
            every=0.2,
        )
        job.send_signal(signal.SIGKILL)
        job.wait(timeout=30)
    finally:
        kill_group(job)
    (parent,), _ = parent_and_children(tmp_path)
    assert parent.info.status == "RUNNING"

    resumed = dlx("sweep", str(spec), "--resume", parent.info.run_id[:8], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    (parent,), children = parent_and_children(tmp_path)
    assert parent.info.status == "FINISHED"
    trials = study(tmp_path, parent.info.run_id).trials
    kept = counted(trials)
    assert [t.state.name for t in kept] == ["COMPLETE"] * 3  # exactly 3, none twice
    assert len(children) == 3 and all(c.info.status == "FINISHED" for c in children)
    assert any(c.data.tags.get("dlx.resumed") == "1" for c in children)  # continued, not redone


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_ctrl_c_stops_the_sweep_and_records_its_parent_killed(tmp_path, jobs):
    spec = write_spec(
        tmp_path,
        {
            "metric": "val_accuracy",
            "trials": 3,
            "params": {LEARNING_RATE: {"log_uniform": [1e-3, 3e-2]}},
        },
        train={**TINY["train"], "epochs": 200},
    )
    job = start("sweep", str(spec), "--jobs", jobs, cwd=tmp_path)
    try:
        wait_for(lambda: any(tmp_path.glob("dlx-checkpoints/*/metrics.jsonl")), "a trial under way")
        job.send_signal(signal.SIGINT)  # to the sweep alone: it stops its jobs
        output, _ = job.communicate(timeout=BOUND_S)
    finally:
        kill_group(job)
    assert job.returncode == 130, output[-3000:]
    (parent,), children = parent_and_children(tmp_path)
    assert parent.info.status == "KILLED"
    assert children and all(c.info.status == "KILLED" for c in children)
    assert f"--resume {parent.info.run_id}" in output


@pytest.mark.timeout(3 * BOUND_S)
def test_two_processes_join_one_study_through_postgresql(postgres_uri, tmp_path):
    spec = write_spec(
        tmp_path,
        {
            "metric": "val_accuracy",
            "method": "random",
            "trials": 4,
            "params": {LEARNING_RATE: {"log_uniform": [1e-3, 3e-2]}},
        },
        train={**TINY["train"], "epochs": 3},
    )
    first = start("sweep", str(spec), "--storage", postgres_uri, cwd=tmp_path)
    try:
        # `sweep <parent run id>: ...`, once the parent run and the study exist.
        line = next(line for line in first.stdout if line.startswith("sweep "))
        parent_id = line.split()[1].rstrip(":")
        second = dlx(
            "sweep", str(spec), "--storage", postgres_uri, "--join", parent_id, cwd=tmp_path
        )
        output, _ = first.communicate(timeout=BOUND_S)
    finally:
        kill_group(first)
    assert first.returncode == 0, output[-3000:]
    assert second.returncode == 0, second.stderr[-3000:]
    (parent,), children = parent_and_children(tmp_path)
    assert parent.info.status == "FINISHED"
    numbers = [c.data.tags["dlx.sweep.trial"] for c in children]
    assert sorted(numbers) == sorted(set(numbers)) and len(numbers) == 4
    trials = study(tmp_path, parent_id, postgres_uri.replace("://", "+psycopg://", 1)).trials
    assert len(counted(trials)) == 4
