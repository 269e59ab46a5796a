"""A disk that fills up: one clean line saying to free space and resume, never a crash.

The real test mounts a small tmpfs (root, Linux); the unit tests need no privilege.
"""

import errno
import shutil
import sqlite3
import subprocess

import pytest
from mlflow import MlflowClient

from dlx.errors import no_space_left, no_space_message
from tests.conftest import ROOT
from tests.in_process import dlx_in_process


def test_a_full_disk_is_recognised_however_it_surfaces():
    assert no_space_left(OSError(errno.ENOSPC, "No space left on device", "/d/f.h5")) == "/d/f.h5"
    assert no_space_left(OSError(errno.EDQUOT, "Disk quota exceeded")) == ""
    try:
        try:
            raise sqlite3.OperationalError("database or disk is full")
        except sqlite3.Error as exc:
            raise RuntimeError("could not log the metrics") from exc
    except RuntimeError as wrapped:
        assert no_space_left(wrapped) == ""
    assert no_space_left(OSError(errno.EACCES, "Permission denied", "/d")) is None
    assert no_space_left(ValueError("shapes differ")) is None
    assert no_space_message("/d", "resume it") == (
        "no space left on device (/d): free space there, then resume it"
    )


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MB tmpfs at `tmp_path / "disk"`, unmounted afterwards."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)], capture_output=True
    )
    if mounted.returncode != 0 or shutil.which("umount") is None:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    yield disk
    subprocess.run(["umount", "--lazy", str(disk)], check=True)


@pytest.mark.slow
def test_a_run_that_fills_the_disk_ends_in_one_line_and_resumes_once_there_is_room(small_disk):
    spec = str(ROOT / "specs" / "digits_cnn.yaml")
    done = dlx_in_process("train", spec, "--set=train.epochs=6", cwd=small_disk)
    assert done.returncode == 1, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    (error,) = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert error.startswith("error: no space left on device (")
    (run_id,) = [p.name for p in (small_disk / "dlx-checkpoints").iterdir()]
    assert f"then `dlx train --resume {run_id}` continues the run" in error

    subprocess.run(["mount", "-o", "remount,size=40m", str(small_disk)], check=True)
    resumed = dlx_in_process("train", "--resume", run_id, cwd=small_disk)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{small_disk / 'mlflow.db'}")
    assert client.get_run(run_id).info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(run_id, "loss")] == list(range(6))


def test_a_checkpoint_the_disk_has_no_room_for_is_not_begun(tmp_path, monkeypatch):
    import keras

    from dlx.train import checkpoints

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    model.compile(optimizer="adam", loss="mse")
    full = shutil.disk_usage(tmp_path)._replace(free=1000)
    monkeypatch.setattr(checkpoints.shutil, "disk_usage", lambda path: full)
    with pytest.raises(OSError) as raised:
        checkpoints._room_for(tmp_path / "stage-0", model)
    assert raised.value.errno == errno.ENOSPC
    assert no_space_left(raised.value) == str(tmp_path / "stage-0")
