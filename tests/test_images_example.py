"""examples/images: the script makes a folder of digit PNGs offline, and the spec trains on it."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import ROOT
from tests.in_process import dlx_in_process
from tests.train.test_resume import runs, store

FOLDER = ROOT / "examples" / "images"


def store_variable(cwd):
    return {"MLFLOW_TRACKING_URI": f"sqlite:///{cwd / 'mlflow.db'}"}


def run(*arguments, cwd, timeout=180):
    """The example's script, run as its README says."""
    done = subprocess.run(
        [sys.executable, *arguments],
        cwd=cwd,
        env={**os.environ, **store_variable(cwd)},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def dlx(*arguments, cwd):
    done = dlx_in_process(*arguments, cwd=cwd, env=store_variable(cwd))
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.mark.slow
def test_the_spec_trains_on_a_folder_the_script_makes(tmp_path):
    shutil.copy(FOLDER / "spec.yaml", tmp_path)
    out = run(FOLDER / "make_digits_folder.py", tmp_path / "digits", "--limit", "200", cwd=tmp_path)

    assert out.strip() == f"wrote 200 images into {tmp_path / 'digits'}"
    files = sorted(tmp_path.glob("digits/*/*.png"))
    assert len(files) == 200
    assert sorted(p.name for p in (tmp_path / "digits").iterdir()) == [str(d) for d in range(10)]
    dlx("train", "spec.yaml", "--set", "train.epochs=1", cwd=tmp_path)
    (record,) = json.loads(dlx("runs", "-f", "json", cwd=tmp_path))
    assert record["status"] == "FINISHED"
    assert {"val_accuracy", "test_accuracy"} <= set(record["metrics"])
    # `cache: auto` chose memory for 200 small images, and the run's params say so.
    (tracked,) = runs(store(tmp_path))
    assert tracked.data.params["data.cache"] == tracked.data.tags["dlx.data_cache"] == "memory"
