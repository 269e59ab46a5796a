"""`dlx train` end to end: real TensorFlow, real sqlite MLflow stores in a temporary directory."""

import shutil
from pathlib import Path

import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from dlx import api
from dlx.cli import app
from tests.conftest import ROOT
from tests.train.mirrored import train_on_two_cpus

pytestmark = pytest.mark.slow  # every test here trains

DIGITS = ROOT / "specs" / "digits_cnn.yaml"
FAST = ["train.epochs=2"]
runner = CliRunner()


def _store():
    return MlflowClient(f"sqlite:///{Path.cwd() / 'mlflow.db'}")


def _runs(client, experiment="digits-cnn"):
    found = client.get_experiment_by_name(experiment)
    return client.search_runs([found.experiment_id]) if found else []


@pytest.fixture(scope="module")
def trained_twice(tmp_path_factory):
    """`api.train(DIGITS, FAST)` twice, each in a store of its own (the working directory's
    `mlflow.db`, as by default): the two results."""
    results = []
    for name in ("first", "second"):
        with pytest.MonkeyPatch.context() as patch:
            patch.chdir(tmp_path_factory.mktemp(name))
            results.append(api.train(DIGITS, FAST))
    return results


class TestTrainedTwice:
    """The tests of `trained_twice`: together in one worker, which trains them once
    (tests/conftest.py)."""

    def test_train_records_a_complete_run(self, trained_twice):
        result = trained_twice[0]
        client = MlflowClient(result.tracking_uri)
        (run,) = _runs(client)
        assert run.info.run_id == result.run_id
        assert run.info.status == "FINISHED"
        assert run.data.params["train.optimizer.adam.learning_rate"] == "0.002"
        assert run.data.params["train.epochs"] == "2"
        tags = run.data.tags
        for tag in (
            "dlx.spec_hash",
            "dlx.data_fingerprint",
            "dlx.version.tensorflow",
            "dlx.version.keras",
            "dlx.version.mlflow",
            "dlx.version.python",
        ):
            assert tags[tag]
        assert (tags["dlx.seed"], tags["dlx.strategy"], tags["dlx.replicas"]) == (
            "42",
            "default",
            "1",
        )
        assert len(client.get_metric_history(result.run_id, "val_accuracy")) == 2
        assert {"test_accuracy", "test_loss", "val_accuracy", "loss"} <= set(run.data.metrics)
        artifacts = {a.path for a in client.list_artifacts(result.run_id)}
        assert {
            "spec.yaml",
            "model_summary.txt",
            "history.csv",
            "learning_curves.png",
            "confusion_matrix.png",
        } <= artifacts
        models = client.search_logged_models([run.info.experiment_id])
        assert [m.source_run_id for m in models] == [result.run_id]

    def test_same_spec_twice_gives_identical_metrics(self, trained_twice):
        first, second = trained_twice
        assert first.metrics == second.metrics
        assert first.run_id != second.run_id


def test_expect_gates_exit_3_after_the_run_is_recorded():
    result = runner.invoke(
        app,
        [
            "train",
            str(DIGITS),
            "--set",
            "train.epochs=1",
            "--expect",
            "val_accuracy>=0.999",
            "--expect",
            "loss<100",
        ],
    )
    assert result.exit_code == 3, result.output
    assert "expectation failed: val_accuracy>=0.999: not met" in result.stderr
    (run,) = _runs(_store())
    assert run.info.status == "FINISHED"


def test_malformed_expect_is_exit_2_before_anything_runs():
    result = runner.invoke(app, ["train", str(DIGITS), "--expect", "val_accuracy=>0.9"])
    assert result.exit_code == 2
    assert "--expect: expected METRIC>=VALUE" in result.stderr
    assert not Path("mlflow.db").exists()


def _copy_spec_with_callback(tmp_path, interrupt):
    shutil.copy(Path(__file__).parent / "plugins_for_tests.py", tmp_path / "plugins_for_tests.py")
    spec = tmp_path / "failing.yaml"
    text = DIGITS.read_text().replace("seed: 42", "seed: 42\nplugins: [plugins_for_tests]")
    text = text.replace(
        "  metrics: [accuracy]",
        "  metrics: [accuracy]\n  callbacks:\n"
        f"    - dlx_tests>FailAtEpoch: {{epoch: 1, interrupt: {str(interrupt).lower()}}}",
    )
    spec.write_text(text)
    return spec


def test_a_failing_run_is_recorded_failed_with_traceback_and_metrics(tmp_path):
    spec = _copy_spec_with_callback(tmp_path, interrupt=False)
    result = runner.invoke(app, ["train", str(spec), "--set", "train.epochs=3"])
    assert result.exit_code == 1
    assert "training failed: RuntimeError: boom at epoch 1" in result.stderr
    assert "Traceback" not in result.output
    client = _store()
    (run,) = _runs(client)
    assert run.info.status == "FAILED"
    assert len(client.get_metric_history(run.info.run_id, "loss")) == 1
    traceback = client.download_artifacts(run.info.run_id, "traceback.txt", str(tmp_path))
    assert "boom at epoch 1" in Path(traceback).read_text()


def test_ctrl_c_marks_the_run_killed_and_exits_130(tmp_path):
    spec = _copy_spec_with_callback(tmp_path, interrupt=True)
    result = runner.invoke(app, ["train", str(spec), "--set", "train.epochs=3"])
    assert result.exit_code == 130
    (run,) = _runs(_store())
    assert run.info.status == "KILLED"


def test_data_errors_name_the_spec_line_before_any_run(tmp_path):
    spec = tmp_path / "bad_data.yaml"
    spec.write_text(
        DIGITS.read_text().replace("source: {sklearn: digits}", "source: {npz: {path: nope.npz}}")
    )
    result = runner.invoke(app, ["train", str(spec)])
    assert result.exit_code == 2
    assert "bad_data.yaml:8:" in result.stderr and "nope.npz" in result.stderr
    assert not Path("mlflow.db").exists()


def test_data_that_does_not_fit_the_model_input(tmp_path):
    spec = tmp_path / "mismatch.yaml"
    spec.write_text(DIGITS.read_text().replace("shape: [8, 8, 1]", "shape: [8, 8, 3]"))
    result = runner.invoke(app, ["train", str(spec)])
    assert result.exit_code == 2
    assert "the data's examples have shape [8, 8, 1]" in result.stderr


def test_mirrored_on_two_logical_cpus(tmp_path):
    train_on_two_cpus(DIGITS, tmp_path, "train.epochs=2", expect="val_accuracy>=0.5")
    (run,) = _runs(_store())
    assert (run.data.tags["dlx.strategy"], run.data.tags["dlx.replicas"]) == ("mirrored", "2")


def test_tracking_uri_from_the_environment(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    result = api.train(DIGITS, ["train.epochs=1", "tracking.log_model=false"])
    assert result.tracking_uri == uri
    assert MlflowClient(uri).get_run(result.run_id).info.status == "FINISHED"
    assert not Path("mlflow.db").exists()
    assert {"loss", "val_accuracy", "test_accuracy"} <= set(result.metrics)


def test_runtime_options_one_device_bfloat16_deterministic():
    overrides = [
        "train.epochs=1",
        "tracking.log_model=false",
        "runtime.strategy=one_device",
        "runtime.mixed_precision=mixed_bfloat16",
        "runtime.deterministic=true",
        "runtime.jit_compile=false",
    ]
    first = api.train(DIGITS, overrides)
    second = api.train(DIGITS, overrides)
    assert first.strategy == "one_device" and first.replicas == 1
    assert first.metrics == second.metrics
    in_float32 = api.train(DIGITS, [o for o in overrides if "mixed_precision" not in o])
    assert in_float32.metrics != first.metrics  # bfloat16 really was in use
    import keras

    assert keras.mixed_precision.global_policy().name == "float32"  # restored after the run


def test_unknown_device_is_a_clear_error():
    result = runner.invoke(
        app,
        [
            "train",
            str(DIGITS),
            "--set",
            "runtime.strategy=mirrored",
            "--set",
            "runtime.devices=[GPU:7]",
        ],
    )
    assert result.exit_code == 1
    assert "runtime.devices: no such device GPU:7" in result.stderr


DIGITS_ONE_HOT = """
import numpy as np
from sklearn.datasets import load_digits


def load():
    x, y = load_digits(return_X_y=True)
    return (x / 16).reshape(-1, 8, 8, 1).astype(np.float32), np.eye(10, dtype=np.float32)[y]
"""

F1_SPEC = """
version: 1
name: digits-f1
seed: 42
data:
  source: {python: "digits_one_hot:load"}
  test_split: 0.1
model:
  layers:
    - input: {shape: [8, 8, 1]}
    - flatten
    - dense: {units: 10, activation: softmax}
train:
  epochs: 1
  loss: categorical_crossentropy
  metrics: [{f1_score: {average: null}}]
tracking:
  log_model: false
"""


def test_a_test_metric_with_a_value_per_class_is_logged_per_class(tmp_path):
    # F1Score takes one-hot targets: scikit-learn's digits, one-hot, from a python source.
    (tmp_path / "digits_one_hot.py").write_text(DIGITS_ONE_HOT)
    spec = tmp_path / "digits_f1.yaml"
    spec.write_text(F1_SPEC)
    result = api.train(spec)
    (run,) = _runs(_store(), "digits-f1")
    assert run.info.status == "FINISHED"
    per_class = {f"test_f1_score.{i}" for i in range(10)}
    assert per_class <= set(run.data.metrics)
    assert per_class <= set(result.metrics)
