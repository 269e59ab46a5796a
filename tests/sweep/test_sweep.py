"""`dlx sweep`: an Optuna study recorded as one MLflow parent run with a child run per trial.

Every test runs the real command in a subprocess against a real MLflow store and a real Optuna
storage (SQLite, or a PostgreSQL server the test starts), on a tiny model of the digits.
"""

import contextlib
import json
import os
import signal
import sqlite3
from pathlib import Path

import optuna
import pytest
import yaml

from tests.in_process import dlx_in_process
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
    """The parent's study: named by its run id, or with --storage by the tag that says which."""
    name = store(folder).get_run(parent_id).data.tags.get("dlx.sweep.study", parent_id)
    return optuna.load_study(
        study_name=name, storage=storage or f"sqlite:///{folder / 'optuna.db'}"
    )


def children_of(pid: int) -> list[int]:
    """The processes whose parent is `pid`, from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie, ended but not yet reaped, does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


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
    # The sweep's run and its trials' are told apart by name, and all say who ran them.
    assert parent.info.run_name == "tiny-sweep"
    assert sorted(c.info.run_name for c in children) == ["tiny-0", "tiny-1", "tiny-2"]
    assert {c.data.tags["mlflow.user"] for c in children} == {parent.data.tags["mlflow.user"]}
    assert not list(tmp_path.glob("*.lock"))  # neither mlflow.db.lock nor optuna.db.lock
    # Off a terminal: a line per trial as it ends, with its run and values, then the table.
    assert f"sweep {parent_id}: 3 trials" in done.stdout
    for child in children:
        line = f"trial {child.data.tags['dlx.sweep.trial']} COMPLETE "
        (ended,) = [x for x in done.stdout.splitlines() if x.startswith(line)]
        assert f"run {child.info.run_id} " in ended
        assert (
            f"model.layers.2.dense.units={child.data.params['model.layers.2.dense.units']}" in ended
        )
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

    # best.yaml is the best trial's resolved spec, without the sweep: the spec that
    # `dlx reproduce` of the best run trains.
    best_yaml = Path(client.download_artifacts(parent_id, "best.yaml", str(tmp_path)))
    assert "sweep" not in yaml.safe_load(best_yaml.read_text())
    best_spec = Path(client.download_artifacts(best.info.run_id, "spec.yaml", str(tmp_path / "b")))
    assert best_yaml.read_text() == best_spec.read_text()
    reproduced = dlx_in_process("reproduce", best.info.run_id, cwd=tmp_path)
    assert reproduced.returncode == 0, reproduced.stderr[-3000:] + reproduced.stdout[-3000:]
    assert "ignores it" not in reproduced.stderr

    # compare SWEEP: its trials, best first, the swept values among the columns.
    compared = dlx_in_process("compare", parent_id[:8], "--format", "json", cwd=tmp_path)
    assert compared.returncode == 0, compared.stderr
    listed = json.loads(compared.stdout)
    values = [r["metrics"]["val_accuracy"] for r in listed]
    assert len(listed) == 3 and values == sorted(values, reverse=True)
    assert LEARNING_RATE in listed[0]["params"]

    # dlx runs: the trials right under their parent.
    listing = dlx_in_process("runs", "--format", "json", cwd=tmp_path)
    rows = json.loads(listing.stdout)
    at = [r["run_id"] for r in rows].index(parent_id)
    assert [r["parent_run_id"] for r in rows[at + 1 : at + 4]] == [parent_id] * 3

    # dlx train trains the spec as written, and says it ignores its sweep.
    known = {r.info.run_id for r in runs(store(tmp_path))}
    trained = dlx_in_process("train", str(spec), "--set", "train.epochs=1", cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert "sweep: section; dlx train trains the spec as written and ignores it" in trained.stderr
    (run,) = [r for r in runs(store(tmp_path)) if r.info.run_id not in known]
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
        assert len(steps) == int(child.data.tags["dlx.pruned"]) < 4  # epochs, counted from 1
        assert child.info.status == "FINISHED"
    states = [t.state.name for t in study(tmp_path, parent.info.run_id).trials]
    assert states.count("PRUNED") == len(pruned)
    compared = dlx_in_process("compare", parent.info.run_id, "--format", "json", cwd=tmp_path)
    assert [r["status"] for r in json.loads(compared.stdout)].count("PRUNED") == len(pruned)


def test_two_jobs_run_the_trials_in_two_processes_and_repeats_score_the_mean_of_seeds(tmp_path):
    spec = write_spec(
        tmp_path,
        {
            "metric": "val_loss",
            "method": "grid",
            "params": {LEARNING_RATE: {"choice": [0.005, 0.02]}},
            "repeats": 2,
        },
        train={**TINY["train"], "epochs": 1},
    )
    done = dlx("sweep", str(spec), "--jobs", "2", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    (parent,), children = parent_and_children(tmp_path)
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["dlx.sweep.goal"] == "min"  # a loss
    assert len({c.data.tags["dlx.process"] for c in children}) == 2
    trials = study(tmp_path, parent.info.run_id).trials
    assert [t.state.name for t in counted(trials)] == ["COMPLETE"] * 2
    assert len(children) == 4  # a run per seed
    for child in children:  # named by its trial and its repeat
        trial, repeat = (child.data.tags[f"dlx.sweep.{key}"] for key in ("trial", "repeat"))
        assert child.info.run_name == f"tiny-{trial}-seed{repeat}"
    for trial in trials:
        runs_of = [c for c in children if c.data.tags["dlx.sweep.trial"] == str(trial.number)]
        assert sorted(c.data.params["seed"] for c in runs_of) == ["3", "4"]
        scores = [c.data.metrics["val_loss"] for c in runs_of]
        assert trial.value == pytest.approx(sum(scores) / 2)
        assert runs_of[0].data.metrics["val_loss_std"] == pytest.approx(
            trial.user_attrs["val_loss_std"]
        )
    # A job's trial trains on its share of the threads: reproduce uses the same (sums over
    # another number of threads round differently), so it reproduces exactly.
    assert children[0].data.tags["dlx.intra_op_threads"] == str(max(1, (os.cpu_count() or 1) // 2))
    reproduced = dlx("reproduce", children[0].info.run_id, cwd=tmp_path)
    assert reproduced.returncode == 0, reproduced.stdout[-3000:] + reproduced.stderr[-3000:]


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

    again = dlx_in_process(
        "sweep", str(spec), "--resume", parent.info.run_id, "--retry-failed", cwd=tmp_path
    )
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-3000:]
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


def killable_sweep(folder: Path) -> Path:
    """3 trials of 10 epochs each (about a second after the first): long enough to be killed
    in the middle of one, by a test that polls its journal every few hundredths of a second."""
    return write_spec(
        folder,
        {
            "metric": "val_accuracy",
            "method": "random",
            "trials": 3,
            "params": {LEARNING_RATE: {"log_uniform": [1e-3, 3e-2]}},
        },
        train={**TINY["train"], "epochs": 10},
    )


def trials_journaling(folder: Path) -> int:
    """The trials of the sweep in `folder` training now: their journals (`metrics.jsonl`,
    written after each epoch, removed with its checkpoints when the trial ends)."""
    return len(list(folder.glob("dlx-checkpoints/*/metrics.jsonl")))


def assert_resume_ends_with_three_trials(
    folder: Path, spec: Path, *arguments: str, storage: str | None = None
) -> list:
    """`dlx sweep --resume` of the killed sweep in `folder` (or, with `storage`, the plain
    command that killed it, run again): exactly 3 trials counted, none twice, each a FINISHED
    child run with its own values; returns the child runs. The resuming sweep runs in this
    process (its `--jobs`, if any, in their own): what is tested here is what it resumes."""
    (parent,), _ = parent_and_children(folder)
    assert parent.info.status == "RUNNING"  # kill -9: nothing could record the end
    again = ("--storage", storage) if storage else ("--resume", parent.info.run_id[:8])
    resumed = dlx_in_process("sweep", str(spec), *again, *arguments, cwd=folder)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-3000:]
    how = "taken over: the process that started it is gone" if storage else "resumed"
    assert f"sweep {parent.info.run_id} ({how})" in resumed.stdout
    (parent,), children = parent_and_children(folder)
    assert parent.info.status == "FINISHED"
    kept = counted(study(folder, parent.info.run_id, storage).trials)
    assert [t.state.name for t in kept] == ["COMPLETE"] * 3  # exactly 3, none twice
    assert len(children) == 3 and all(c.info.status == "FINISHED" for c in children)
    assert len({t.params[LEARNING_RATE] for t in kept}) == 3
    return children


@pytest.mark.timeout(3 * BOUND_S)
def test_kill_9_then_the_same_command_again_ends_with_exactly_the_trials_asked(tmp_path):
    """A sweep named from its spec in a shared storage, continued by the same command run
    again, which takes over the sweep its killed first process left (`--resume` after a
    kill is the `--jobs` test's, below)."""
    spec = killable_sweep(tmp_path)
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    job = start("sweep", str(spec), "--storage", storage, cwd=tmp_path)
    try:
        # Killed while its second trial trains (its run open, some epochs done).
        wait_for(
            lambda: trials_journaling(tmp_path) and _child_runs(tmp_path) >= 2,
            "a second trial under way",
            job=job,
        )
        job.send_signal(signal.SIGKILL)
        job.wait(timeout=30)
    finally:
        kill_group(job)
    children = assert_resume_ends_with_three_trials(tmp_path, spec, storage=storage)
    assert any(c.data.tags.get("dlx.resumed") == "1" for c in children)  # continued, not redone


@pytest.mark.timeout(3 * BOUND_S)
def test_kill_9_of_a_sweep_ends_its_jobs_and_resume_ends_with_exactly_the_trials_asked(tmp_path):
    spec = killable_sweep(tmp_path)
    job = start("sweep", str(spec), "--jobs", "2", cwd=tmp_path)
    try:
        wait_for(lambda: trials_journaling(tmp_path) >= 2, "two trials under way", job=job)
        workers = children_of(job.pid)
        assert len(workers) == 2
        job.send_signal(signal.SIGKILL)  # the sweep: its jobs are not left working alone
        job.wait(timeout=30)
        wait_for(lambda: not any(alive(w) for w in workers), "the jobs gone with their sweep")
    finally:
        kill_group(job)
    assert_resume_ends_with_three_trials(tmp_path, spec, "--jobs", "2")


def test_ctrl_c_stops_the_sweep_and_its_jobs_and_records_its_parent_killed(tmp_path):
    spec = write_spec(
        tmp_path,
        {
            "metric": "val_accuracy",
            "trials": 3,
            "params": {LEARNING_RATE: {"log_uniform": [1e-3, 3e-2]}},
        },
        train={**TINY["train"], "epochs": 200},
    )
    job = start("sweep", str(spec), "--jobs", "2", cwd=tmp_path)
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
def test_the_same_command_twice_works_one_study_through_postgresql(postgres_uri, tmp_path):
    spec = write_spec(
        tmp_path,
        {
            "metric": "val_accuracy",
            "method": "random",
            "trials": 4,
            "params": {LEARNING_RATE: {"log_uniform": [1e-3, 3e-2]}},
        },
        train={**TINY["train"], "epochs": 1},
    )
    # As on two machines: the same command, at once; the first to create the study starts
    # the sweep, the other joins it.
    first = start("sweep", str(spec), "--storage", postgres_uri, cwd=tmp_path)
    second = start("sweep", str(spec), "--storage", postgres_uri, cwd=tmp_path)
    try:
        outputs = [job.communicate(timeout=BOUND_S)[0] for job in (first, second)]
    finally:
        kill_group(first)
        kill_group(second)
    assert first.returncode == 0, outputs[0][-3000:]
    assert second.returncode == 0, outputs[1][-3000:]
    (parent,), children = parent_and_children(tmp_path)
    parent_id = parent.info.run_id
    assert parent.info.status == "FINISHED"
    assert all(f"sweep {parent_id}: 4 trials" in output for output in outputs)
    assert parent.data.tags["dlx.sweep.study"].startswith("dlx-tiny-")
    numbers = [c.data.tags["dlx.sweep.trial"] for c in children]
    assert sorted(numbers) == sorted(set(numbers)) and len(numbers) == 4
    # Two processes joining at once draw their own values, not the same ones twice.
    assert len({c.data.params[LEARNING_RATE] for c in children}) == 4
    storage = postgres_uri.replace("://", "+psycopg://", 1)
    assert len(counted(study(tmp_path, parent_id, storage).trials)) == 4

    # --join names the sweep; this one has its trials: nothing more to run.
    joined = dlx_in_process(
        "sweep", str(spec), "--storage", postgres_uri, "--join", parent_id[:8], cwd=tmp_path
    )
    assert joined.returncode == 0, joined.stderr[-3000:]
    assert f"sweep {parent_id}: 4 trials" in joined.stdout
    assert len(parent_and_children(tmp_path)[1]) == 4


def _child_runs(folder: Path) -> int:
    """The sweep's trial runs so far, read without creating or migrating its store."""
    database = folder / "mlflow.db"
    if not database.exists():
        return 0
    try:
        with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
            query = "SELECT COUNT(*) FROM tags WHERE key = 'mlflow.parentRunId'"
            return db.execute(query).fetchone()[0]
    except sqlite3.Error:  # not made yet
        return 0


def test_sigterm_stops_a_sweep_wherever_it_lands_and_records_it_killed(tmp_path):
    """SIGTERM as `timeout` sends it, once, at two points of two sweeps of 500 trials (once
    the first trial's run is made, no trial done; once the third's is, two done): each stops
    in bounded time with exit status 143, nothing left RUNNING."""
    sweep = {
        "metric": "val_accuracy",
        "trials": 500,
        "params": {LEARNING_RATE: {"log_uniform": [1e-3, 3e-2]}},
    }
    jobs = {}
    for after in (1, 3):
        folder = tmp_path / f"after-{after}"
        folder.mkdir()
        jobs[after] = folder, start("sweep", str(write_spec(folder, sweep)), cwd=folder)
    try:
        for after, (folder, job) in jobs.items():
            wait_for(lambda: _child_runs(folder) >= after, f"{after} trials", job=job)  # noqa: B023
            job.send_signal(signal.SIGTERM)
        for folder, job in jobs.values():
            output = job.communicate(timeout=60)[0]
            assert job.returncode == 143, output[-3000:]
            assert "Traceback" not in output and "Exception ignored" not in output
            (parent,), children = parent_and_children(folder)
            assert parent.info.status == "KILLED"
            assert len(children) < 500
            assert all(c.info.status != "RUNNING" for c in children)
            assert f"--resume {parent.info.run_id}" in output.splitlines()[-1]
    finally:
        for _, job in jobs.values():
            kill_group(job)
