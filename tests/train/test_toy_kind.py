"""A new model kind is one module plus its spec fields: a toy kind, defined here and nowhere in
dlx, validates, is inspected, trains and exports through dlx's own commands."""

from pathlib import Path
from typing import Any

import pytest

from dlx import api
from dlx.build.model import BuiltModel, build_model
from dlx.errors import SpecError
from dlx.spec import MODEL_KINDS, ModelKind, register_model_kind
from dlx.track.logged_models import load_run_model
from dlx.train.tasks import TASKS, SupervisedTask, register_task

SPEC = """\
version: 1
name: iris-probe
seed: 7
data:
  source: {sklearn: iris}
  validation_split: 0.2
  test_split: 0.2
model:
  kind: probe
  layers:
    - input: {shape: [4]}
    - dense: {units: 8, activation: relu, name: features}
    - dense: {units: 3, activation: softmax}
train:
  epochs: 2
  batch_size: 16
  loss: sparse_categorical_crossentropy
  metrics: [accuracy]
"""


class ProbeTask(SupervisedTask):
    """A supervised model that also logs its hidden features as a model of their own, which
    is exported beside it."""

    logged_models = ("model", "features")

    def build_models(self) -> BuiltModel:
        import keras

        built = build_model(self.loaded, load_run_model)
        model = built.model
        built.encoder = keras.Model(model.inputs, model.get_layer("features").output)
        return built

    def log_artifacts(self, run: Any, model: Any, splits: Any) -> None:
        assert self.built is not None
        run.log_keras_model(self.built.encoder, self.sample_inputs(splits), name="features")


@pytest.fixture
def probe_kind():
    """The toy kind registered for one test, and gone after it."""
    register_model_kind("probe", ModelKind(needs=("layers",), fields=("layers",)))
    register_task("probe")(ProbeTask)
    try:
        yield
    finally:
        del TASKS["probe"]
        del MODEL_KINDS["probe"]
        register_model_kind("supervised", MODEL_KINDS["supervised"])  # the schema without it


def test_an_unregistered_kind_is_a_located_error(tmp_path: Path):
    spec = tmp_path / "probe.yaml"
    spec.write_text(SPEC)

    with pytest.raises(SpecError) as caught:
        api.validate(spec, check_data=False)

    (problem,) = caught.value.problems
    assert problem.render().startswith(
        "probe.yaml:9:9: error: model.kind: expected one of 'supervised', 'autoencoder', 'gan'. "
        "Received: 'probe'"
    )


def test_the_schema_and_inspect_know_a_registered_kind(tmp_path: Path, probe_kind):
    spec = tmp_path / "probe.yaml"
    spec.write_text(SPEC)

    assert "probe" in api.schema()["$defs"]["Model"]["properties"]["kind"]["enum"]
    description = api.inspect(spec)

    assert (description.name, description.kind) == ("iris-probe", "probe")
    assert [layer.name for layer in description.layers] == ["input_layer", "features", "dense"]
    assert description.params == 4 * 8 + 8 + 8 * 3 + 3


@pytest.mark.slow
def test_a_registered_kind_trains_and_exports_every_model_it_logs(tmp_path: Path, probe_kind):
    spec = tmp_path / "probe.yaml"
    spec.write_text(SPEC)
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"

    trained = api.train(spec, tracking_uri=store)
    exported = api.export(
        trained.run_id, ["saved_model"], output=tmp_path / "export", tracking_uri=store
    )

    assert set(trained.metrics) >= {"accuracy", "val_accuracy", "test_accuracy"}
    assert {check.model for check in exported.checks} == {"model", "features"}
    assert not exported.failed
    assert (tmp_path / "export" / "saved_model" / "features").exists()
