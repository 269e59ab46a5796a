"""`dlx.train.resume`: which recorded runs may be resumed, on a real MLflow store."""

import socket
import subprocess
from pathlib import Path

import pytest
from mlflow import MlflowClient

from dlx.errors import UsageError
from dlx.track.tags import CHECKPOINTS, PROCESS, RESUMED
from dlx.train.resume import Resume, resume_point, this_process
from tests.train.processes import wait_for

pytestmark = pytest.mark.slow  # each test trains or runs dlx in processes


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> tuple[MlflowClient, str]:
    uri = f"sqlite:///{tmp_path_factory.mktemp('store') / 'mlflow.db'}"
    return MlflowClient(uri), uri


def recorded(store, status: str, tags: dict[str, str]):
    client, _ = store
    run_id = client.create_run("0", tags=tags).info.run_id
    if status != "RUNNING":
        client.set_terminated(run_id, status)
    return client.get_run(run_id)


def check(store, run):
    return resume_point(run, store[1])


def test_a_finished_run_is_not_resumed(store, tmp_path):
    run = recorded(store, "FINISHED", {CHECKPOINTS: str(tmp_path)})
    with pytest.raises(UsageError, match=r"is FINISHED: there is nothing to resume$"):
        check(store, run)


def test_a_running_run_whose_process_lives_is_not_resumed(store, tmp_path):
    with subprocess.Popen(["sleep", "60"]) as process:
        try:
            run = recorded(
                store,
                "RUNNING",
                {PROCESS: f"{socket.gethostname()}:{process.pid}", CHECKPOINTS: str(tmp_path)},
            )
            with pytest.raises(UsageError) as caught:
                check(store, run)
        finally:
            process.kill()
    assert str(caught.value) == (
        f"the run {run.info.run_id} is still running "
        f"(process {process.pid} on {socket.gethostname()})"
    )


def test_a_running_run_whose_process_is_a_zombie_resumes_one_more_time(store, tmp_path):
    with subprocess.Popen(["sleep", "60"]) as process:
        process.kill()
        stat = Path(f"/proc/{process.pid}/stat")
        wait_for(
            lambda: stat.read_text().rpartition(")")[2].split()[0] == "Z",
            "the killed process to become a zombie",
            timeout=10,
            every=0.01,
        )
        tags = {
            PROCESS: f"{socket.gethostname()}:{process.pid}",
            CHECKPOINTS: str(tmp_path),
            RESUMED: "2",
        }
        run = recorded(store, "RUNNING", tags)
        point = check(store, run)
    assert point == Resume(run.info.run_id, store[1], tmp_path, count=3)


def test_a_running_run_tagged_with_this_very_process_resumes(store, tmp_path):
    # A container started again can give the new process the old one's pid.
    run = recorded(store, "RUNNING", {PROCESS: this_process(), CHECKPOINTS: str(tmp_path)})
    assert check(store, run) == Resume(run.info.run_id, store[1], tmp_path, count=1)


def test_a_run_without_its_checkpoint_folder_is_not_resumed(store, tmp_path):
    bare = recorded(store, "FAILED", {})
    with pytest.raises(UsageError, match=r"has no checkpoints to resume from$"):
        check(store, bare)
    gone = tmp_path / "gone"
    run = recorded(store, "FAILED", {CHECKPOINTS: str(gone)})
    with pytest.raises(UsageError) as caught:
        check(store, run)
    assert str(caught.value) == (
        f"the run {run.info.run_id} has no checkpoints to resume from ({gone} does not exist)"
    )
