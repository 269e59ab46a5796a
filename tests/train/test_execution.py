"""`train.steps_per_execution`: the choice (`dlx.train.execution`), and runs trained with it."""

import shutil
from pathlib import Path

import keras
import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from dlx import api
from dlx.cli import app
from dlx.cli.progress import LiveBars
from dlx.train.execution import (
    MAX_STEPS,
    choose_jit_compile,
    choose_steps_per_execution,
    estimated_step_seconds,
)
from tests.conftest import ROOT
from tests.train.plugins_for_tests import CountBatches

DIGITS = ROOT / "specs" / "digits_cnn.yaml"
runner = CliRunner()


def _small_cnn():
    return keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(32, 3, padding="same"),
            keras.layers.Flatten(),
            keras.layers.Dense(10),
        ]
    )


def _lstm():
    return keras.Sequential(
        [
            keras.Input((80,), dtype="int32"),
            keras.layers.Embedding(10000, 32),
            keras.layers.LSTM(32),
            keras.layers.Dense(2),
        ]
    )


def test_auto_runs_many_steps_of_a_small_model_per_call_and_divides_the_epoch():
    chosen = choose_steps_per_execution("auto", _small_cnn(), 32, 625, [])
    assert (chosen.steps, chosen.asked) == (25, "auto")  # 625 = 5**4: 25 is its divisor <= 100
    assert chosen.describe().startswith("25 (auto: a step estimated at")
    assert choose_steps_per_execution("auto", _small_cnn(), 32, 1000, []).steps == MAX_STEPS


def test_auto_counts_a_recurrent_layers_time_steps_and_not_an_embeddings_rows():
    lstm, cnn = estimated_step_seconds(_lstm(), 64), estimated_step_seconds(_small_cnn(), 64)
    assert lstm > 100 * cnn  # 80 sequential time steps; the 320,000 embedding weights add nothing
    assert choose_steps_per_execution("auto", _lstm(), 64, 100, []).steps <= 5


def test_auto_runs_longer_calls_when_xla_copies_the_variables_in_and_out():
    plain = choose_steps_per_execution("auto", _lstm(), 64, 100, [])
    compiled = choose_steps_per_execution("auto", _lstm(), 64, 100, [], xla=True)
    assert compiled.steps >= 4 * plain.steps


def _compiled(model, jit_compile="auto"):
    model.compile(optimizer="adam", loss="mse", jit_compile=jit_compile)
    return model


def test_auto_compiles_a_long_enough_training_without_convolutions_with_xla_on_a_cpu():
    chosen = choose_jit_compile("auto", _compiled(_lstm()), 64, 400)  # 4 epochs of 100 steps
    assert chosen.describe() == "on (auto: no convolution on a CPU)"
    short = choose_jit_compile("auto", _compiled(_lstm()), 64, 100)  # one epoch: about 2 s
    assert short.describe() == (
        "off (auto: a training of about 1.9 s: too short to pay compiling back)"
    )
    assert choose_jit_compile("auto", _compiled(_small_cnn()), 32, 10**6).describe() == (
        "off (auto: convolutions: slower with XLA on a CPU)"
    )
    assert choose_jit_compile(False, _compiled(_lstm(), False), 64, 400).describe() == "off (asked)"
    mlp = keras.Sequential([keras.Input((784,)), keras.layers.Dense(1024), keras.layers.Dense(10)])
    assert choose_jit_compile("auto", _compiled(mlp), 128, 2000).enabled  # 4 epochs of 60,000
    conv_lstm = keras.Sequential(
        [keras.Input((4, 8, 8, 1)), keras.layers.ConvLSTM2D(4, 3), keras.layers.Flatten()]
    )
    assert not choose_jit_compile("auto", _compiled(conv_lstm), 32, 10**6).enabled
    assert choose_jit_compile("auto", _compiled(_lstm()), 64, 400, replicas=2).enabled is False


def test_auto_leaves_xla_off_for_a_recurrent_model_with_a_layer_xla_cannot_compile():
    vectorize = keras.layers.TextVectorization(max_tokens=20, output_sequence_length=4)
    vectorize.adapt(["a b c", "b c d"])
    strings = keras.Sequential(
        [keras.Input((), dtype="string"), vectorize, keras.layers.Embedding(20, 4)]
        + [keras.layers.LSTM(4), keras.layers.Dense(1)]
    )
    chosen = choose_jit_compile("auto", _compiled(strings), 64, 10**6)
    assert chosen.describe() == "off (auto: a layer or deterministic ops that XLA does not support)"


def test_auto_is_one_when_a_spec_callback_reads_every_batch():
    chosen = choose_steps_per_execution("auto", _small_cnn(), 32, 625, [CountBatches()])
    assert chosen.steps == 1
    assert chosen.describe() == "1 (auto: CountBatches reads every batch)"
    epoch_only = keras.callbacks.EarlyStopping()
    assert choose_steps_per_execution("auto", _small_cnn(), 32, 625, [epoch_only]).steps == 25


def test_a_number_asked_for_is_lowered_to_a_divisor_of_the_epoch():
    assert choose_steps_per_execution(8, _small_cnn(), 32, 64, []).describe() == "8 (asked 8)"
    lowered = choose_steps_per_execution(10, _small_cnn(), 32, 21, [])
    assert lowered.describe() == "7 (asked 10: the largest divisor of the epoch's 21 steps)"
    assert choose_steps_per_execution(10, _small_cnn(), 32, 13, []).steps == 1  # 13 is prime
    assert choose_steps_per_execution(500, _small_cnn(), 32, 4, []).steps == 4


def test_several_workers_or_replicas_run_one_step_per_call():
    for asked in ("auto", 25):
        chosen = choose_steps_per_execution(asked, _small_cnn(), 32, 625, [], workers=2)
        assert chosen.steps == 1
        chosen = choose_steps_per_execution(asked, _small_cnn(), 32, 625, [], replicas=2)
        assert chosen.describe().startswith("1 (") and chosen.describe().endswith(
            "several replicas)"
        )


@pytest.mark.parametrize("value", ["0", "-2", "fast", "2.5", "true"])
def test_anything_but_auto_or_a_positive_integer_is_a_spec_error(value):
    result = runner.invoke(
        app, ["validate", str(DIGITS), "--set", f"train.steps_per_execution={value}"]
    )
    assert result.exit_code == 2
    assert (
        "error: train.steps_per_execution: expected 'auto' or a positive integer. Received: "
        in result.stderr
    )


@pytest.mark.slow
def test_auto_trains_the_same_epochs_as_one_step_per_call_and_records_its_choice():
    spec = ["train.epochs=2", "runtime.deterministic=true"]
    one = api.train(DIGITS, [*spec, "train.steps_per_execution=1"])
    auto = api.train(DIGITS, spec)
    assert auto.steps_per_execution.startswith("20 (auto: ")  # 1,258 examples / 64: 20 steps
    assert one.steps_per_execution == "1 (asked 1)"
    assert auto.metrics == pytest.approx(one.metrics, rel=1e-5)
    client = MlflowClient(auto.tracking_uri)
    params = [client.get_run(r.run_id).data.params for r in (one, auto)]
    assert [p["train.steps_per_execution"] for p in params] == ["1", "20"]
    out = runner.invoke(app, ["train", str(DIGITS), "--set", "train.epochs=1"]).stdout
    assert "  steps per execution: 20 (auto: a step estimated at " in out


@pytest.mark.slow
def test_a_callback_with_a_batch_hook_sees_every_batch(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shutil.copy(Path(__file__).parent / "plugins_for_tests.py", tmp_path / "plugins_for_tests.py")
    spec = tmp_path / "counted.yaml"
    text = DIGITS.read_text().replace("seed: 42", "seed: 42\nplugins: [plugins_for_tests]")
    spec.write_text(
        text.replace(
            "  metrics: [accuracy]",
            "  metrics: [accuracy]\n  callbacks:\n    - dlx_tests>CountBatches: {path: b.txt}",
        )
    )
    result = api.train(spec, ["train.epochs=2"], progress=LiveBars())
    assert result.steps_per_execution == "1 (auto: CountBatches reads every batch)"
    assert (tmp_path / "b.txt").read_text().split() == [str(b) for b in range(20)] * 2
