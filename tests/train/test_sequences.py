"""Sequence models end to end: the text classifier and the forecaster in specs/, and RNN layers."""

import math
import shutil
import textwrap
from pathlib import Path

import pytest
from mlflow import MlflowClient

from dlx import api
from tests.conftest import ROOT
from tests.train.test_resume import runs, store

pytestmark = pytest.mark.slow  # every test here trains

QUICK = ["train.epochs=1", "tracking.log_model=false"]


def test_text_classifier_learns_from_raw_strings():
    result = api.train(ROOT / "specs" / "sequence_lstm.yaml", QUICK)
    # Strings in the model: XLA cannot compile its text_vectorization.
    assert result.jit_compile.startswith("off (auto: a layer")

    # Three balanced classes: chance is 1/3; one epoch reaches about 2/3.
    assert result.metrics["val_accuracy"] > 0.45
    assert {"test_accuracy", "test_loss"} <= set(result.metrics)


def test_forecaster_trains_on_windows_of_a_series():
    result = api.train(ROOT / "specs" / "timeseries_gru.yaml", [*QUICK, "train.epochs=2"])
    # Two epochs of a small GRU: XLA's compiling would cost more than it saves.
    assert result.jit_compile.startswith("off (auto: a training of about ")
    params = MlflowClient(result.tracking_uri).get_run(result.run_id).data.params
    assert params["runtime.jit_compile"] == "false"

    assert {"mae", "val_mae", "test_mae"} <= set(result.metrics)
    assert result.metrics["val_mae"] < 5.0  # the series' level is about 10


def test_simple_rnn_gru_and_bidirectional_on_windows():
    spec = Path("rnn.yaml")
    spec.write_text(
        textwrap.dedent(
            """\
            version: 1
            name: tiny-rnn
            data:
              source: {synthetic: {samples: 96, x_shape: [3], targets: 1}}
              window: {size: 6, horizon: 2, stride: 2}
              validation_split: 0.25
            model:
              layers:
                - input: {shape: [6, 3]}
                - simple_rnn: {units: 8, return_sequences: true}
                - gru: {units: 8, return_sequences: true}
                - bidirectional:
                    layer: {gru: 4}
                    backward_layer: {simple_rnn: {units: 4, go_backwards: true}}
                - dense: 1
            train:
              epochs: 1
              batch_size: 16
              loss: mse
              metrics: [mae]
            runtime:
              jit_compile: true
            tracking:
              log_model: false
            """
        )
    )

    result = api.train(spec)

    assert {"loss", "val_loss", "val_mae"} <= set(result.metrics)
    assert result.jit_compile == "on (asked)"  # XLA compiles each kind of recurrent layer
    assert all(math.isfinite(value) for value in result.metrics.values())


def test_a_recurrent_model_compiled_with_xla_resumes_exactly(tmp_path):
    """Ctrl-C in epoch 3 of 4, `--resume`: the metrics of an uninterrupted run, to the bit."""
    for name in ("seasonal_series.py",):
        shutil.copy(ROOT / "specs" / name, tmp_path / name)
    shutil.copy(Path(__file__).parent / "plugins_for_tests.py", tmp_path / "plugins_for_tests.py")
    text = (ROOT / "specs" / "timeseries_gru.yaml").read_text()
    text = text.replace("seed: 42", "seed: 42\nplugins: [plugins_for_tests]")
    text = text.replace(
        "  callbacks:\n",
        "  callbacks:\n"
        f"    - dlx_tests>InterruptOnce: {{epoch: 2, marker: '{tmp_path / 'interrupted'}'}}\n",
    )
    spec = tmp_path / "gru.yaml"
    spec.write_text(text)
    overrides = [
        "train.epochs=4",
        "tracking.log_model=false",
        "data.source.python.steps=800",
        "runtime.jit_compile=true",
    ]

    with pytest.raises(KeyboardInterrupt):
        api.train(spec, overrides)
    client = store(Path.cwd())
    (interrupted,) = runs(client)
    result = api.resume(interrupted.info.run_id)
    reference = api.train(spec, overrides)  # the marker is there: no interrupt now

    assert result.jit_compile == reference.jit_compile == "on (asked)"
    resumed = client.get_run(result.run_id)
    assert resumed.info.status == "FINISHED"
    assert resumed.data.metrics == client.get_run(reference.run_id).data.metrics
