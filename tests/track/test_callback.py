import math

import keras
import numpy as np
import pytest
from mlflow import MlflowClient

from dlx.track import MlflowMetricsCallback, TrackedRun


def _data():
    rng = np.random.default_rng(0)
    return rng.random((64, 4), dtype=np.float32), rng.integers(0, 3, 64)


def _model():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


@pytest.mark.slow
def test_each_epoch_is_one_request_at_step_epoch_and_fine_tuning_continues(store_uri):
    x, y = _data()
    model = _model()
    with TrackedRun("fit", tracking_uri=store_uri) as run:
        requests = []
        log_batch = run.client.log_batch
        run.client.log_batch = lambda *args, **kwargs: (
            requests.append(1) or log_batch(*args, **kwargs)
        )
        callback = MlflowMetricsCallback(run)
        fit = model.fit(
            x, y, validation_split=0.25, epochs=2, batch_size=8, callbacks=[callback], verbose=0
        )
        model.fit(x, y, epochs=3, initial_epoch=2, batch_size=8, callbacks=[callback], verbose=0)

    assert len(requests) == 3
    client = MlflowClient(store_uri)
    assert [m.step for m in client.get_metric_history(run.run_id, "loss")] == [0, 1, 2]
    assert [m.step for m in client.get_metric_history(run.run_id, "val_loss")] == [0, 1]
    losses = [m.value for m in client.get_metric_history(run.run_id, "val_loss")]
    np.testing.assert_allclose(losses, fit.history["val_loss"], rtol=1e-6)

    columns = callback.columns()
    assert columns["epoch"] == [0, 1, 2]
    assert set(columns) == {"epoch", "loss", "accuracy", "val_loss", "val_accuracy"}
    assert math.isnan(columns["val_loss"][2])
    lines = callback.history_csv().splitlines()
    assert lines[0] == "epoch,accuracy,loss,val_accuracy,val_loss"
    assert len(lines) == 4
    assert lines[3].startswith("2,") and lines[3].endswith(",nan,nan")


def test_a_metric_with_several_values_is_logged_per_value(store_uri):
    with TrackedRun("fit", tracking_uri=store_uri) as run:
        callback = MlflowMetricsCallback(run)
        callback.on_epoch_end(0, {"loss": np.float32(0.5), "f1_score": np.array([0.25, 0.75])})
    assert callback.history == [{"epoch": 0, "loss": 0.5, "f1_score.0": 0.25, "f1_score.1": 0.75}]
    metrics = MlflowClient(store_uri).get_run(run.run_id).data.metrics
    assert metrics == {"loss": 0.5, "f1_score.0": 0.25, "f1_score.1": 0.75}
