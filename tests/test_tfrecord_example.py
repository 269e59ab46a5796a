"""examples/tfrecord and examples/kubernetes/digits_shards.yaml: the digits written as 32
TFRecord shards train with two workers into one run, each worker reading 16 of the shards."""

import json
import shutil
import subprocess
import sys

import pytest
import yaml

from tests.conftest import ROOT
from tests.in_process import dlx_in_process
from tests.train.processes import BOUND_S, dlx
from tests.train.test_resume import runs, store

EXAMPLE = ROOT / "examples" / "tfrecord"


@pytest.fixture
def shards(tmp_path):
    """The example's spec beside the shards its script writes (offline)."""
    shutil.copy(EXAMPLE / "digits.yaml", tmp_path / "digits.yaml")
    done = subprocess.run(
        [sys.executable, str(EXAMPLE / "write_digits.py"), "--output", str(tmp_path / "data")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("1438 training examples in 32 files, 359 for validation")
    return tmp_path


@pytest.mark.slow
@pytest.mark.timeout(2 * BOUND_S + 60)
def test_two_workers_read_half_the_shards_each_into_one_run(shards):
    report = dlx_in_process("data", "digits.yaml", "--workers", "2", "--format", "json", cwd=shards)
    assert report.returncode == 0, report.stderr[-3000:]
    report = json.loads(report.stdout)
    train, validation = report["splits"]
    assert (train["files"], train["examples"]) == (32, 1438)
    assert (validation["files"], validation["examples"]) == (1, 359)
    assert (report["shard_policy"], report["files_per_worker"]) == ("file", "16")

    done = dlx("train", "digits.yaml", "--workers", "2", "--set", "train.epochs=2", cwd=shards)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "training data sharded by file: 16 files per worker (2 workers)" in done.stdout
    (run,) = runs(store(shards))
    assert run.info.status == "FINISHED"
    tags = run.data.tags
    assert (tags["dlx.workers"], tags["dlx.shard_policy"], tags["dlx.files_per_worker"]) == (
        "2",
        "file",
        "16",
    )
    assert run.data.metrics["val_accuracy"] > 0.5


def test_the_kubernetes_spec_reads_the_same_shards_from_the_volume():
    """digits_shards.yaml is the example's spec with the shards at /work/data and no cache."""
    example = yaml.safe_load((EXAMPLE / "digits.yaml").read_text())
    volume = yaml.safe_load((ROOT / "examples" / "kubernetes" / "digits_shards.yaml").read_text())
    assert volume["data"]["source"]["tfrecord"]["files"] == "/work/data/train-*.tfrecord"
    assert volume["data"]["cache"] == "none"
    for spec in (example, volume):
        for split in ("source", "validation"):
            spec["data"][split]["tfrecord"]["files"] = "shards"
        del spec["data"]["cache"], spec["name"], spec["description"]
    assert volume == example
