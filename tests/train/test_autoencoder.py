"""The autoencoder kind end to end: training, its artifacts, denoising, and `dlx score`."""

import numpy as np
import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from dlx import api
from dlx.cli import app
from dlx.data import SourceContext, make_splits
from dlx.spec import load_spec
from dlx.train.autoencoder import AutoencoderTask, reconstruction_errors
from tests.conftest import ROOT
from tests.train.mirrored import train_on_two_cpus

SPEC = ROOT / "specs" / "digits_autoencoder.yaml"
runner = CliRunner()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One short training run of the shipped spec, in its own store: (result, tracking URI)."""
    folder = tmp_path_factory.mktemp("autoencoder")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    result = api.train(SPEC, ["train.epochs=2", f"tracking.uri={uri}"])
    return result, uri


class TestAutoencoderRun:
    """The tests of the `trained` run: together in one worker, which trains it once
    (tests/conftest.py)."""

    @pytest.mark.slow
    def test_trains_input_to_input_and_logs_its_artifacts(self, trained):
        result, uri = trained
        client = MlflowClient(uri)
        run = client.get_run(result.run_id)
        assert run.info.status == "FINISHED"
        assert {"loss", "val_loss", "test_loss", "reconstruction_error_p95"} <= set(
            run.data.metrics
        )
        assert (
            run.data.metrics["reconstruction_error_p95"]
            > run.data.metrics["reconstruction_error_mean"]
        )
        artifacts = {a.path for a in client.list_artifacts(result.run_id)}
        assert {
            "reconstructions.png",
            "reconstruction_errors.png",
            "learning_curves.png",
        } <= artifacts
        models = client.search_logged_models([run.info.experiment_id])
        assert sorted(m.name for m in models) == ["encoder", "model"]

    @pytest.mark.slow
    def test_score_writes_errors_and_embeddings(self, trained, tmp_path):
        result, uri = trained
        command = ["score", result.run_id[:8], "--tracking-uri", uri, "--output", "scores.csv"]
        done = runner.invoke(app, [*command, "--embed", "codes.npy"])
        assert done.exit_code == 0, done.output
        assert "270 examples scored (test data)" in done.stdout
        assert "over threshold" in done.stdout
        lines = (tmp_path / "scores.csv").read_text().splitlines()
        assert lines[0] == "index,error" and len(lines) == 271
        errors = np.array([float(line.split(",")[1]) for line in lines[1:]])
        p95 = MlflowClient(uri).get_run(result.run_id).data.metrics["reconstruction_error_p95"]
        assert np.percentile(errors, 95) == pytest.approx(p95, rel=1e-4)  # the same test split
        assert np.load(tmp_path / "codes.npy").shape == (270, 16)

    @pytest.mark.slow
    def test_score_another_spec_reads_all_its_data(self, trained):
        result, uri = trained
        done = runner.invoke(
            app,
            ["score", result.run_id, str(SPEC), "--set", "data.test_split=0"]
            + ["--set", "data.validation_split=0", "--tracking-uri", uri],
        )
        assert done.exit_code == 0, done.output
        assert "1797 examples scored (all data)" in done.stdout

    @pytest.mark.slow
    def test_score_an_unknown_run_is_a_usage_error(self, trained):
        _, uri = trained
        done = runner.invoke(app, ["score", "0123abcd", "--tracking-uri", uri])
        assert done.exit_code == 2
        assert "no run with id '0123abcd'" in done.stderr


def test_noise_goes_on_training_inputs_only():
    loaded = load_spec(SPEC, ["model.noise_stddev=0.5", "data.shuffle=false"])
    splits = make_splits(loaded.spec.data, context=SourceContext(ROOT, seed=1), batch_size=32)
    train, validation, test = AutoencoderTask(loaded).datasets(splits, 0, 2)

    batches = list(train)
    noisy, clean = batches[0]
    assert np.array_equal(clean, splits.train_arrays[0][:32])  # the target is the clean input
    assert 0.3 < float(np.std(noisy - clean)) < 0.7
    again, same = batches[splits.steps_per_epoch]  # the first batch of the second epoch
    assert np.array_equal(clean, same) and not np.array_equal(noisy, again)  # fresh noise
    resumed = AutoencoderTask(loaded).datasets(splits, 1, 2)[0]
    assert np.array_equal(again, next(iter(resumed))[0])  # a resumed run draws the same noise
    for held_out in (validation, test):
        x, y = next(iter(held_out))
        assert np.array_equal(x, y)


def test_reconstruction_errors_of_a_perfect_and_a_constant_model():
    import keras

    x = np.random.default_rng(0).random((10, 4, 4, 1)).astype(np.float32)
    identity = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Identity()])
    zeros = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Lambda(lambda t: 0.0 * t)])
    assert np.allclose(reconstruction_errors(identity, x, batch_size=3), 0.0)
    expected = (x**2).reshape(10, -1).mean(axis=1)
    assert np.allclose(reconstruction_errors(zeros, x, batch_size=3), expected, atol=1e-6)


@pytest.mark.slow
def test_mirrored_on_two_logical_cpus(tmp_path):
    done = train_on_two_cpus(SPEC, tmp_path, "train.epochs=1", "tracking.log_model=false")
    assert "test_loss" in done.stdout
