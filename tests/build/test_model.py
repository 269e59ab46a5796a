"""Models built from specs: a transfer-learning head beside a backbone used whole."""

from pathlib import Path

import pytest
from mlflow import MlflowClient

from dlx import api
from dlx.errors import SpecError
from tests.conftest import ROOT

TRANSFER = ROOT / "specs" / "digits_transfer.yaml"
WHOLE = ["model.backbone.until=null"]


def test_a_head_on_a_whole_backbone_gets_names_of_its_own():
    built = api.validate(TRANSFER, WHOLE).built
    backbone_names = [layer.name for layer in built.backbone.layers]
    names = [layer.name for layer in built.model.layers]
    assert backbone_names[-2:] == ["dropout", "dense_1"]
    assert names == [*backbone_names, "dense_2"]  # after the backbone's dense_1, as Keras counts


def test_a_head_name_the_backbone_has_is_a_located_error():
    with pytest.raises(SpecError, match="the layer name 'dense_1' is already used in the model"):
        api.validate(TRANSFER, [*WHOLE, "model.layers=[dense: {units: 5, name: dense_1}]"])


@pytest.mark.slow
def test_a_head_on_a_whole_backbone_trains():
    result = api.train(TRANSFER, [*WHOLE, "train.epochs=1", "train.fine_tune=null"])
    run = MlflowClient(f"sqlite:///{Path.cwd() / 'mlflow.db'}").get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert "val_accuracy" in run.data.metrics


RUN_BACKBONE = ["model.backbone={run: 0123abcd, until: features}", "tracking.uri=sqlite:///x.db"]


def test_a_backbone_from_a_run_is_read_by_the_loader_the_caller_passes():
    import keras

    from dlx.build.model import build_model
    from dlx.spec import load_spec

    asked = []

    def load_run_model(tracking_uri, run_id):
        asked.append((tracking_uri, run_id))
        return keras.saving.load_model(ROOT / "specs" / "digits_backbone.keras", compile=False)

    built = build_model(load_spec(TRANSFER, RUN_BACKBONE), load_run_model)
    assert asked == [("sqlite:///x.db", "0123abcd")]
    assert built.backbone.name == "digits_backbone_until_features"
    assert not built.backbone.trainable


def test_a_backbone_from_a_run_without_a_loader_is_a_located_error():
    from dlx.build.model import build_model
    from dlx.spec import load_spec

    with pytest.raises(SpecError) as caught:
        build_model(load_spec(TRANSFER, RUN_BACKBONE))
    (problem,) = caught.value.problems
    assert problem.message == "no backbone: loading a run's model needs a store to read"
    assert problem.key == "model.backbone.run"
