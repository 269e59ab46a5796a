"""`--format json` is strict JSON (RFC 8259) even for a run whose metrics are NaN."""

import json

import pytest

from dlx import api
from tests.conftest import ROOT
from tests.in_process import dlx_in_process

pytestmark = pytest.mark.slow  # the runs' tests train

DIGITS = ROOT / "specs" / "digits_cnn.yaml"


def _refuse(constant: str):
    raise ValueError(f"not strict JSON: {constant}")


@pytest.fixture(scope="module")
def diverged(tmp_path_factory):
    """A folder whose store holds one run that logged `loss=nan` (and went on)."""
    folder = tmp_path_factory.mktemp("diverged")
    api.train(
        DIGITS,
        [
            "train.epochs=1",
            "train.optimizer={adam: {learning_rate: 1.0e6}}",
            "train.on_nan=continue",
            "tracking.log_model=false",
            f"tracking.uri=sqlite:///{folder / 'mlflow.db'}",
        ],
    )
    return folder


class TestDivergedRun:
    """The tests of the `diverged` run: together in one worker, which trains it once
    (tests/conftest.py)."""

    @pytest.mark.parametrize("command", ["runs", "compare"])
    def test_nan_metrics_are_null(self, diverged, command):
        done = dlx_in_process(command, "--format=json", cwd=diverged)
        assert done.returncode == 0, done.stderr
        (record,) = json.loads(done.stdout, parse_constant=_refuse)
        assert record["metrics"]["val_loss"] is None


def test_inspect_json_is_strict(tmp_path):
    done = dlx_in_process("inspect", str(DIGITS), "--format=json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout, parse_constant=_refuse)["params"] > 0
