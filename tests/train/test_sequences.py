"""Sequence models end to end: the text classifier and the forecaster in specs/, and RNN layers."""

import textwrap
from pathlib import Path

import pytest

from dlx import api
from tests.conftest import ROOT

pytestmark = pytest.mark.slow  # every test here trains

QUICK = ["train.epochs=1", "tracking.log_model=false"]


def test_text_classifier_learns_from_raw_strings():
    result = api.train(ROOT / "specs" / "sequence_lstm.yaml", QUICK)

    # Three balanced classes: chance is 1/3; one epoch reaches about 2/3.
    assert result.metrics["val_accuracy"] > 0.45
    assert {"test_accuracy", "test_loss"} <= set(result.metrics)


def test_forecaster_trains_on_windows_of_a_series():
    result = api.train(ROOT / "specs" / "timeseries_gru.yaml", [*QUICK, "train.epochs=2"])

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
            tracking:
              log_model: false
            """
        )
    )

    result = api.train(spec)

    assert {"loss", "val_loss", "val_mae"} <= set(result.metrics)
