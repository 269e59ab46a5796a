"""Transfer learning: backbones from a .keras file, a dlx run or keras.applications; fine-tune."""

import shutil
from pathlib import Path

import keras
import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from dlx import api
from dlx.cli import app
from tests.conftest import ROOT

SPECS = ROOT / "specs"
runner = CliRunner()

HEAD = """
version: 1
name: transfer-test
seed: 1
data: {source: {sklearn: digits}, validation_split: 0.2}
model:
  backbone: BACKBONE
  layers: [dense: {units: 10, activation: softmax}]
train:
  epochs: 2
  optimizer: adam
  loss: sparse_categorical_crossentropy
  metrics: [accuracy]
  fine_tune: {unfreeze: all, epochs: 2, learning_rate: 1e-4}
tracking: {log_model: false}
"""


@pytest.mark.slow
def test_digits_transfer_trains_from_an_empty_directory_with_a_fine_tune_stage():
    result = api.train(
        SPECS / "digits_transfer.yaml", ["train.epochs=2", "train.fine_tune.epochs=1"]
    )
    client = MlflowClient(f"sqlite:///{Path.cwd() / 'mlflow.db'}")
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    steps = [m.step for m in client.get_metric_history(result.run_id, "val_accuracy")]
    assert steps == [0, 1, 2]  # two epochs, then the fine-tune epoch, in one run
    assert "test_accuracy" in run.data.metrics


@pytest.mark.slow
def test_backbone_from_a_dlx_run_and_fine_tune_keeps_batch_norm_frozen(tmp_path):
    spec = tmp_path / "with_bn.yaml"
    spec.write_text(
        (SPECS / "digits_cnn.yaml")
        .read_text()
        .replace("    - flatten\n", "    - batch_normalization\n    - flatten: {name: features}\n")
    )
    first = api.train(spec, ["train.epochs=1"])
    transfer = tmp_path / "transfer.yaml"
    transfer.write_text(HEAD.replace("BACKBONE", f"{{run: {first.run_id}, until: features}}"))
    validated = api.validate(transfer)
    backbone = validated.built.backbone
    assert not backbone.trainable
    assert validated.built.model.count_params() == backbone.count_params() + 512 * 10 + 10

    from dlx.spec import load_spec
    from dlx.train.tasks import SupervisedTask

    task = SupervisedTask(load_spec(transfer))
    model = task.build(jit_compile=False)
    stages = task.stages(model)
    assert [(s.label, s.epochs) for s in stages] == [("", 2), ("fine-tune", 2)]
    stages[1].prepare()
    layers = task.built.backbone.layers
    assert any(isinstance(layer, keras.layers.BatchNormalization) for layer in layers)
    for layer in layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            assert not layer.trainable
        elif layer.weights:
            assert layer.trainable
    assert float(model.optimizer.learning_rate) == pytest.approx(1e-4)

    result = api.train(transfer)
    assert len(MlflowClient(result.tracking_uri).get_metric_history(result.run_id, "loss")) == 4


@pytest.mark.slow
def test_backbone_from_an_unknown_run_is_a_located_error(tmp_path):
    spec = tmp_path / "bad.yaml"
    spec.write_text(HEAD.replace("BACKBONE", "{run: 0123456789abcdef, until: features}"))
    result = runner.invoke(app, ["validate", str(spec)])
    assert result.exit_code == 2
    assert (
        "bad.yaml:7:19: error: model.backbone.run: no backbone: no run with id '0123456789abcdef'"
        in result.stderr
    )


@pytest.mark.slow
def test_backbone_from_keras_applications_without_weights(tmp_path):
    spec = tmp_path / "app.yaml"
    spec.write_text(
        HEAD.replace(
            "BACKBONE", "{application: MobileNetV2, weights: null, input_shape: [32, 32, 3]}"
        )
    )
    built = api.validate(spec).built
    assert built.backbone.name.startswith("mobilenetv2")
    assert built.model.count_params() == built.backbone.count_params() + 1280 * 10 + 10


@pytest.mark.slow
def test_imagenet_weights_offline_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    for proxy in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"):
        monkeypatch.setenv(proxy, "http://127.0.0.1:9")  # a closed port: fail at once
    spec = tmp_path / "imagenet.yaml"
    spec.write_text(
        HEAD.replace(
            "BACKBONE", "{application: MobileNetV2, weights: imagenet, input_shape: [96, 96, 3]}"
        )
    )
    result = runner.invoke(app, ["validate", str(spec)])
    assert result.exit_code == 2
    assert "cannot download the imagenet weights of MobileNetV2 (no network?)" in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.slow
def test_fine_tune_without_a_backbone_is_a_located_error(tmp_path):
    spec = tmp_path / "no_backbone.yaml"
    shutil.copy(SPECS / "digits_cnn.yaml", spec)
    result = runner.invoke(
        app,
        [
            "train",
            str(spec),
            "--set",
            "train.fine_tune={unfreeze: 1, epochs: 1}",
            "--set",
            "train.epochs=1",
        ],
    )
    assert result.exit_code == 2
    assert "train.fine_tune: fine_tune needs a model.backbone" in result.stderr
