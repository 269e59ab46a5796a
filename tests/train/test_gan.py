"""The GAN kind: adversarial training, its sample grids, its saved generator, and replicas."""

import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf
from mlflow import MlflowClient
from typer.testing import CliRunner

from dlx import api
from dlx.cli import app
from dlx.train.gan_tensorflow import Adversarial
from tests.conftest import ROOT
from tests.train.mirrored import train_on_two_cpus

SPEC = ROOT / "specs" / "digits_gan.yaml"
runner = CliRunner()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Three epochs of the shipped spec, samples every two: (result, tracking URI)."""
    folder = tmp_path_factory.mktemp("gan")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    result = api.train(SPEC, ["train.epochs=3", "model.sample_every=2", f"tracking.uri={uri}"])
    return result, uri


class TestGanRun:
    """The tests of the `trained` run: together in one worker, which trains it once
    (tests/conftest.py)."""

    @pytest.mark.slow
    def test_trains_and_logs_losses_samples_and_the_generator(self, trained):
        result, uri = trained
        client = MlflowClient(uri)
        run = client.get_run(result.run_id)
        assert run.info.status == "FINISHED"
        assert set(result.metrics) == {"d_loss", "g_loss"}  # no validation, no test
        for metric in ("d_loss", "g_loss"):
            assert len(client.get_metric_history(result.run_id, metric)) == 3
        samples = {a.path for a in client.list_artifacts(result.run_id, "samples")}
        # Every two epochs, and the last.
        assert samples == {"samples/epoch_002.png", "samples/epoch_003.png"}
        models = client.search_logged_models([run.info.experiment_id])
        assert [m.name for m in models] == ["model"]

    @pytest.mark.slow
    def test_the_logged_model_is_the_generator(self, trained):
        import mlflow.keras

        result, uri = trained
        client = MlflowClient(uri)
        (model,) = client.search_logged_models([client.get_run(result.run_id).info.experiment_id])
        generator = mlflow.keras.load_model(model.artifact_location)
        assert tuple(generator.input.shape) == (None, 32)
        assert tuple(generator.output.shape) == (None, 8, 8, 1)


@pytest.mark.slow
def test_a_gan_has_no_loss_to_choose():
    done = runner.invoke(app, ["train", str(SPEC), "--set", "train.loss=mse"])
    assert done.exit_code == 2
    assert "a GAN has no train.loss" in done.stderr


def _tiny_gan(optimizer_rate: float = 0.1) -> Adversarial:
    generator = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(16), keras.layers.Reshape((4, 4, 1))]
    )
    discriminator = keras.Sequential(
        [keras.Input((4, 4, 1)), keras.layers.Flatten(), keras.layers.Dense(1)]
    )
    model = Adversarial(generator, discriminator, latent_dim=4, seed=0)
    model.compile(keras.optimizers.SGD(optimizer_rate), keras.optimizers.SGD(optimizer_rate))
    return model


@pytest.mark.slow
@pytest.mark.parametrize("with_targets", [True, False], ids=["x-y", "x"])
def test_targets_are_ignored(with_targets):
    x = np.random.default_rng(0).random((8, 4, 4, 1)).astype(np.float32)
    data = (x, np.zeros(8)) if with_targets else x
    model = _tiny_gan()
    before = [w.numpy().copy() for w in model.generator.weights]
    dataset = tf.data.Dataset.from_tensor_slices(data).batch(4)
    history = model.fit(dataset, epochs=1, shuffle=False, verbose=0)
    assert set(history.history) == {"d_loss", "g_loss"}
    assert any(
        not np.array_equal(b, a.numpy())
        for b, a in zip(before, model.generator.weights, strict=True)
    )


# One step on two replicas must equal one step on one device with the whole batch. The
# generator's first layer zeroes its latent input, so that the replicas' latent draws (which
# differ from the single device's) do not change the step; the losses and gradients still do.
_SAME_STEP = textwrap.dedent(
    """
    import numpy as np
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras

    from dlx.train.gan_tensorflow import Adversarial

    x = np.random.default_rng(1).random((16, 4, 4, 1)).astype("float32")
    x *= np.arange(16, dtype="float32").reshape(16, 1, 1, 1)


    def step(strategy):
        with strategy.scope():
            generator = keras.Sequential([
                keras.Input((4,)),
                keras.layers.Lambda(lambda z: 0.0 * z),
                keras.layers.Dense(16, bias_initializer="ones"),
                keras.layers.Reshape((4, 4, 1)),
            ])
            discriminator = keras.Sequential(
                [keras.Input((4, 4, 1)), keras.layers.Flatten(), keras.layers.Dense(1)]
            )
            discriminator.set_weights(
                [np.linspace(-1, 1, 16).reshape(16, 1).astype("float32"), np.zeros(1, "float32")]
            )
            model = Adversarial(generator, discriminator, latent_dim=4, seed=0)
            model.compile(keras.optimizers.SGD(0.1), keras.optimizers.SGD(0.1), jit_compile=False)
        dataset = tf.data.Dataset.from_tensor_slices(x).batch(16)
        logs = model.fit(dataset, shuffle=False, verbose=0).history
        weights = np.concatenate([w.numpy().ravel() for w in generator.weights[1:]
                                  + discriminator.weights])
        return logs, weights


    one_logs, one = step(tf.distribute.get_strategy())
    two_logs, two = step(tf.distribute.MirroredStrategy(["CPU:0", "CPU:1"]))
    print(one_logs, two_logs)
    np.testing.assert_allclose(two, one, rtol=1e-5, atol=1e-6)
    for name in ("d_loss", "g_loss"):
        np.testing.assert_allclose(two_logs[name], one_logs[name], rtol=1e-5)
    print("same step")
    """
)


@pytest.mark.slow
def test_a_mirrored_step_equals_a_single_device_step(tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", _SAME_STEP],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "same step" in done.stdout


@pytest.mark.slow
def test_mirrored_on_two_logical_cpus_with_no_grappler_remapper_error(tmp_path):
    """With oneDNN (the default on recent x86 CPUs), grappler's remapper failed on the
    discriminator's conv2d + leaky_relu on every run and said so on stderr."""
    done = train_on_two_cpus(
        SPEC,
        tmp_path,
        "train.epochs=2",
        "model.sample_every=1",
        "tracking.log_model=false",
        env={"TF_ENABLE_ONEDNN_OPTS": "1"},
    )
    assert "remapper" not in done.stderr
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("digits-gan").experiment_id])
    assert {"d_loss", "g_loss"} <= set(run.data.metrics)
    samples = {a.path for a in client.list_artifacts(run.info.run_id, "samples")}
    assert samples == {"samples/epoch_001.png", "samples/epoch_002.png"}
