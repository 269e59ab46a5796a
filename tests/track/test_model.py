import json
from pathlib import Path

import keras
import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient

from dlx.track import TrackedRun


def _tiny_model():
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(8, activation="relu"),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )


@pytest.mark.slow
def test_a_logged_keras_model_loads_back_and_predicts_the_same(store_uri, monkeypatch):
    model = _tiny_model()
    x = np.random.default_rng(0).random((32, 4), dtype=np.float32)
    with TrackedRun("models", tracking_uri=store_uri) as run:
        info = run.log_keras_model(model, x)

    monkeypatch.setenv("MLFLOW_TRACKING_URI", store_uri)
    expected = model.predict(x, verbose=0)
    for uri in (info.model_uri, f"runs:/{run.run_id}/model"):
        loaded = mlflow.keras.load_model(uri)
        np.testing.assert_allclose(loaded.predict(x, verbose=0), expected, rtol=1e-6)

    inputs = json.loads(info.signature.to_dict()["inputs"])
    assert inputs == [{"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 4]}}]
    client = MlflowClient(store_uri)
    logged = client.get_logged_model(info.model_id)
    assert logged.status == "READY"
    assert logged.source_run_id == run.run_id
    folder = mlflow.artifacts.download_artifacts(logged.artifact_location, tracking_uri=store_uri)
    requirements = (Path(folder) / "requirements.txt").read_text().splitlines()
    assert f"keras=={keras.__version__}" in requirements
    assert [output.model_id for output in client.get_run(run.run_id).outputs.model_outputs] == [
        info.model_id
    ]


def test_a_model_with_named_inputs_and_outputs_gets_a_named_signature(store_uri):
    a, b = keras.Input((4,), name="a"), keras.Input((2,), name="b")
    joined = keras.layers.Concatenate()([a, b])
    outputs = {"y": keras.layers.Dense(1, name="y")(joined), "z": keras.layers.Dense(2)(joined)}
    model = keras.Model({"a": a, "b": b}, outputs)
    rng = np.random.default_rng(0)
    x = {"a": rng.random((16, 4), dtype=np.float32), "b": rng.random((16, 2), dtype=np.float32)}
    with TrackedRun("models", tracking_uri=store_uri) as run:
        info = run.log_keras_model(model, x, name="two_heads")
    assert info.signature.inputs.input_names() == ["a", "b"]
    assert info.signature.outputs.input_names() == ["y", "z"]


def test_logging_a_model_skips_mlflows_scan_of_the_installed_packages():
    """MLflow maps every installed distribution's files to its modules (most of a second) to
    check requirements that dlx takes from this very process; the name dlx replaces for the
    moment of the save must still be MLflow's, or the second comes back unnoticed."""
    from mlflow.utils import environment

    from dlx.track.run import _REQUIREMENTS_CHECK, _installed_requirements_unchecked

    check = getattr(environment, _REQUIREMENTS_CHECK)
    with _installed_requirements_unchecked():
        assert getattr(environment, _REQUIREMENTS_CHECK) is not check
    assert getattr(environment, _REQUIREMENTS_CHECK) is check
