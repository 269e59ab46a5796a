"""`dlx train --resume`: a run killed (even with `kill -9`) ends as if it had never stopped."""

import shutil
import signal
from pathlib import Path

import numpy as np
import pytest
import yaml
from mlflow import MlflowClient
from PIL import Image
from typer.testing import CliRunner

from dlx import api
from dlx.cli import app
from tests.conftest import ROOT
from tests.in_process import dlx_in_process
from tests.train.processes import BOUND_S, dlx, journal_lines, kill_group, start, wait_for

pytestmark = pytest.mark.slow  # every test here trains

SPECS = ROOT / "specs"
DIGITS = SPECS / "digits_cnn.yaml"
KEYS = ("loss", "accuracy", "val_loss", "val_accuracy")
runner = CliRunner()


def store(cwd: Path) -> MlflowClient:
    return MlflowClient(f"sqlite:///{cwd / 'mlflow.db'}")


def runs(client: MlflowClient) -> list:
    ids = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(ids, order_by=["attributes.start_time ASC"])


def assert_each_epoch_logged_once(client: MlflowClient, run_id: str, epochs: int) -> None:
    for key in KEYS:
        steps = [m.step for m in client.get_metric_history(run_id, key)]
        assert steps == list(range(epochs)), (key, steps)


@pytest.mark.timeout(3 * BOUND_S)
def killed_after_three_epochs(folder, *arguments):
    """Run `dlx ARGUMENTS` in `folder`, `kill -9` it once three epochs are journaled; return the
    store's client and its one run."""
    job = start(*arguments, cwd=folder)
    try:
        wait_for(lambda: journal_lines(folder) >= 3, "three epochs journaled")
        job.send_signal(signal.SIGKILL)
        job.wait(timeout=30)
    finally:
        kill_group(job)
    client = store(folder)
    (run,) = runs(client)
    return client, run


def test_kill_9_then_resume_gives_one_finished_run_equal_to_an_uninterrupted_one(tmp_path):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    straight.mkdir()
    killed.mkdir()
    count = 8  # killed after three epochs: five to resume
    epochs = f"train.epochs={count}"
    assert dlx_in_process("train", str(DIGITS), "--set", epochs, cwd=straight).returncode == 0
    (reference,) = runs(store(straight))

    client, run = killed_after_three_epochs(killed, "train", str(DIGITS), "--set", epochs)
    assert run.info.status == "RUNNING"  # kill -9: nothing could record the end
    assert len(client.get_metric_history(run.info.run_id, "loss")) < count

    resumed = dlx_in_process("train", "--resume", run.info.run_id[:8], cwd=killed)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"run {run.info.run_id} finished" in resumed.stdout
    (run,) = runs(client)
    assert run.info.status == "FINISHED"
    assert run.data.tags["dlx.resumed"] == "1"
    assert_each_epoch_logged_once(client, run.info.run_id, count)
    assert run.data.metrics == reference.data.metrics  # exactly: same data order, same state
    assert not (killed / "dlx-checkpoints").exists()


def _transfer_spec(folder: Path) -> Path:
    """digits_transfer.yaml with a Ctrl-C in its fine-tuning stage, the first time only."""
    for name in ("digits_subsets.py", "digits_backbone.keras"):
        shutil.copy(SPECS / name, folder / name)
    shutil.copy(Path(__file__).parent / "plugins_for_tests.py", folder / "plugins_for_tests.py")
    text = (SPECS / "digits_transfer.yaml").read_text()
    text = text.replace("seed: 7", "seed: 7\nplugins: [plugins_for_tests]")
    text = text.replace(
        "  metrics: [accuracy]",
        "  metrics: [accuracy]\n  callbacks:\n"
        f"    - dlx_tests>InterruptOnce: {{epoch: 4, marker: '{folder / 'interrupted'}'}}",
    )
    spec = folder / "transfer.yaml"
    spec.write_text(text)
    return spec


def test_a_run_interrupted_in_its_fine_tuning_stage_resumes_into_that_stage(tmp_path):
    spec = _transfer_spec(tmp_path)
    overrides = ["train.epochs=3", "train.fine_tune.epochs=3", "tracking.log_model=false"]
    with pytest.raises(KeyboardInterrupt):
        api.train(spec, overrides)
    client = store(Path.cwd())
    (interrupted,) = runs(client)
    assert interrupted.info.status == "KILLED"
    assert len(client.get_metric_history(interrupted.info.run_id, "loss")) == 4

    result = api.resume(interrupted.info.run_id[:10])
    assert result.run_id == interrupted.info.run_id
    reference = api.train(spec, overrides)  # the marker is there: no interrupt now

    resumed = client.get_run(result.run_id)
    assert resumed.info.status == "FINISHED"
    assert_each_epoch_logged_once(client, result.run_id, 6)
    assert resumed.data.metrics == client.get_run(reference.run_id).data.metrics
    assert result.metrics == reference.metrics


def _early_stopping_spec(folder: Path) -> Path:
    """Digits with early stopping that only the first epoch satisfies (`min_delta: 100`: the
    run stops after 3 more), a plateau that halves the learning rate, and a Ctrl-C at the
    start of epoch 3 (index 2), the first time only."""
    from tests.sweep.test_sweep import TINY  # here: that module imports this one

    shutil.copy(Path(__file__).parent / "plugins_for_tests.py", folder / "plugins_for_tests.py")
    spec = {
        **TINY,
        "name": "stops-early",
        "plugins": ["plugins_for_tests"],
        "data": {**TINY["data"], "test_split": 0.1},
        "train": {
            **TINY["train"],
            "epochs": 20,
            "callbacks": [
                {
                    "early_stopping": {
                        "monitor": "val_loss",
                        "patience": 3,
                        "min_delta": 100,
                        "restore_best_weights": True,
                    }
                },
                {"reduce_lr_on_plateau": {"monitor": "val_loss", "patience": 1, "factor": 0.5}},
                {"dlx_tests>InterruptOnce": {"epoch": 2, "marker": str(folder / "interrupted")}},
            ],
        },
    }
    path = folder / "stops.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def test_a_resumed_run_stops_early_where_the_uninterrupted_one_does(tmp_path):
    """Early stopping's wait, best value and best weights, and the plateau's, are part of the
    checkpoint: without them the resumed run would wait 3 epochs afresh and end elsewhere."""
    spec = _early_stopping_spec(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        api.train(spec)
    client = store(tmp_path)
    (interrupted,) = runs(client)
    assert len(client.get_metric_history(interrupted.info.run_id, "loss")) == 2

    result = api.resume(interrupted.info.run_id)
    reference = api.train(spec)  # the marker is there: no interrupt now

    assert_each_epoch_logged_once(client, reference.run_id, 4)  # epoch 1 best, 3 more waited
    assert_each_epoch_logged_once(client, result.run_id, 4)
    # The same learning rates each epoch, and the test score of the restored best weights.
    resumed, straight = client.get_run(result.run_id), client.get_run(reference.run_id)
    assert resumed.data.metrics == straight.data.metrics
    assert [m.value for m in client.get_metric_history(result.run_id, "learning_rate")] == [
        m.value for m in client.get_metric_history(reference.run_id, "learning_rate")
    ]


def test_resume_refuses_a_finished_run_a_spec_and_overrides(tmp_path):
    finished = api.train(DIGITS, ["train.epochs=1", "tracking.log_model=false"])
    result = runner.invoke(app, ["train", "--resume", finished.run_id])
    assert result.exit_code == 2
    assert f"the run {finished.run_id} is FINISHED: there is nothing to resume" in result.stderr
    result = runner.invoke(app, ["train", str(DIGITS), "--resume", finished.run_id])
    assert result.exit_code == 2 and "not both" in result.stderr
    result = runner.invoke(app, ["train", "--resume", "abc", "--set", "train.epochs=2"])
    assert result.exit_code == 2 and "--set cannot apply" in result.stderr
    result = runner.invoke(app, ["train"])
    assert result.exit_code == 2 and "missing SPEC (or --resume RUN)" in result.stderr


def write_images_spec(folder: Path, cache: str = "none") -> Path:
    """A spec that streams 200 tiny PNG images of two classes, and the images."""
    rng = np.random.default_rng(0)
    for class_id, name in enumerate(("dark", "light")):
        (folder / "shapes" / name).mkdir(parents=True)
        for number in range(100):
            pixels = rng.integers(0, 128, (12, 12, 3)) + 127 * class_id
            Image.fromarray(pixels.astype(np.uint8)).save(
                folder / "shapes" / name / f"{number}.png"
            )
    spec = folder / "shapes.yaml"
    spec.write_text(
        "version: 1\nname: shapes\nseed: 3\n"
        "data:\n  source: {images: {directory: shapes, image_size: [8, 8]}}\n"
        f"  validation_split: 0.2\n  test_split: 0.1\n  shuffle_buffer: 32\n  cache: {cache}\n"
        "model:\n  layers:\n    - input: {shape: [8, 8, 3]}\n    - normalization\n"
        "    - conv2d: {filters: 4, kernel_size: 3, activation: relu}\n    - flatten\n"
        "    - dense: {units: 2, activation: softmax}\n"
        "train:\n  epochs: 20\n  batch_size: 16\n  loss: sparse_categorical_crossentropy\n"
        "  metrics: [accuracy]\n  class_weight: balanced\n"
    )
    return spec


@pytest.mark.timeout(3 * BOUND_S)
def test_kill_9_then_resume_a_streamed_images_spec_equals_an_uninterrupted_run(tmp_path):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    straight.mkdir()
    killed.mkdir()
    finished = dlx_in_process("train", str(write_images_spec(straight)), cwd=straight)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert "data streamed from its files, cache: none" in finished.stdout
    (reference,) = runs(store(straight))
    assert reference.data.tags["dlx.data_cache"] == "none"
    assert "test_accuracy" in reference.data.metrics

    client, run = killed_after_three_epochs(killed, "train", str(write_images_spec(killed)))
    assert run.info.status == "RUNNING"
    assert len(client.get_metric_history(run.info.run_id, "loss")) < 20

    resumed = dlx_in_process("train", "--resume", run.info.run_id[:8], cwd=killed)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    (run,) = runs(client)
    assert run.info.status == "FINISHED"
    assert_each_epoch_logged_once(client, run.info.run_id, 20)
    assert run.data.metrics == reference.data.metrics


@pytest.mark.timeout(3 * BOUND_S)
@pytest.mark.parametrize("save", [1, 3])
def test_kill_9_while_a_checkpoint_is_written_then_resume_equals_an_uninterrupted_run(
    tmp_path, save
):
    """Killed with its weights file half written: the first checkpoint (nothing before it to
    fall back to), or a later one (the epoch before it, with its own random state)."""
    shutil.copy(Path(__file__).parent / "plugins_for_tests.py", tmp_path / "plugins_for_tests.py")
    marker = tmp_path / "killed"
    spec = tmp_path / "dropout.yaml"
    spec.write_text(
        "version: 1\nname: dropout\nseed: 5\nplugins: [plugins_for_tests]\n"
        "data:\n  source: {sklearn: digits}\n  validation_split: 0.2\n"
        "model:\n  layers:\n    - input: {shape: [8, 8, 1]}\n    - flatten\n"
        "    - dense: {units: 32, activation: relu}\n    - dropout: 0.3\n"
        "    - dense: {units: 10, activation: softmax}\n"
        "train:\n  epochs: 6\n  batch_size: 64\n  loss: sparse_categorical_crossentropy\n"
        "  metrics: [accuracy]\n  callbacks:\n"
        f"    - dlx_tests>KillWhileSaving: {{save: {save}, marker: '{marker}'}}\n"
        "tracking: {log_model: false}\n"
    )
    killed = dlx("train", str(spec), cwd=tmp_path)
    assert killed.returncode == -signal.SIGKILL and marker.exists()
    client = store(tmp_path)
    (run,) = runs(client)
    assert run.info.status == "RUNNING"

    resumed = dlx_in_process("train", "--resume", run.info.run_id[:8], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    reference = dlx_in_process("train", str(spec), cwd=tmp_path)  # the marker is there: no kill
    assert reference.returncode == 0, reference.stderr[-3000:]
    run, straight = runs(client)
    assert run.info.status == "FINISHED"
    assert_each_epoch_logged_once(client, run.info.run_id, 6)
    assert run.data.metrics == straight.data.metrics


def test_a_failure_while_the_model_is_logged_resumes_with_one_test_score_and_no_pending_model(
    tmp_path, monkeypatch
):
    from mlflow.entities import LoggedModelStatus

    from dlx.track import TrackedRun

    def stopped_while_logging(self, model, sample_inputs, *, name="model"):
        client, experiment_id, run_id = self._started()
        client.create_logged_model(experiment_id, name=name, source_run_id=run_id)  # PENDING
        raise OSError("the store's disk went away while the model was written")

    spec = str(SPECS / "iris_mlp.yaml")
    with monkeypatch.context() as patched:
        patched.setattr(TrackedRun, "log_keras_model", stopped_while_logging)
        failed = dlx_in_process("train", spec, "--set=train.epochs=3", cwd=tmp_path)
    assert failed.returncode == 1, failed.stderr[-3000:]
    client = store(tmp_path)
    (run,) = runs(client)
    run_id = run.info.run_id

    resumed = dlx_in_process("train", "--resume", run_id, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert client.get_run(run_id).info.status == "FINISHED"
    assert len(client.get_metric_history(run_id, "test_accuracy")) == 1
    models = client.search_logged_models(
        experiment_ids=[run.info.experiment_id], filter_string=f"source_run_id = '{run_id}'"
    )
    assert sorted(m.status for m in models) == sorted(
        [LoggedModelStatus.FAILED, LoggedModelStatus.READY]
    )
