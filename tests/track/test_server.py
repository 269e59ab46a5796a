"""A run written to a real `mlflow server`, started for this module and stopped after it."""

from pathlib import Path

import keras
import numpy as np
import pytest
from mlflow import MlflowClient

from dlx.track import TrackedRun
from tests.track.server import MlflowServer

pytestmark = pytest.mark.slow  # every test here starts an MLflow server; most train


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    served = MlflowServer(tmp_path_factory.mktemp("server"))
    with served:
        yield served.url, served.folder


class TestServer:
    """The tests of the module's `server`: together in one worker, which starts it once
    (tests/conftest.py)."""

    def test_a_run_is_written_to_a_tracking_server(self, server, tmp_path):
        url, folder = server
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
        x = np.ones((4, 3), dtype=np.float32)
        with TrackedRun("served", run_name="remote", tracking_uri=url, params={"a": "1"}) as run:
            run.log_metrics({"loss": 0.5}, step=0)
            run.log_text("hello", "notes.txt")
            info = run.log_keras_model(model, x)

        client = MlflowClient(url)
        record = client.get_run(run.run_id)
        assert record.info.status == "FINISHED"
        assert record.data.params == {"a": "1"}
        assert record.data.metrics == {"loss": 0.5}
        experiment = client.get_experiment(run.experiment_id)
        assert experiment.artifact_location.startswith("mlflow-artifacts:")
        served = folder / "mlartifacts" / run.experiment_id
        assert (served / run.run_id / "artifacts" / "notes.txt").read_text() == "hello"
        assert (served / "models" / info.model_id / "artifacts" / "MLmodel").exists()
        assert run.ui_hint() == f"{url}/#/experiments/{run.experiment_id}/runs/{run.run_id}"
        assert not list(tmp_path.iterdir())  # nothing written in the client's working directory

    def test_dlx_train_records_its_run_on_the_server(self, server):
        from dlx import api
        from tests.conftest import ROOT

        url, _ = server
        spec = ROOT / "specs" / "digits_cnn.yaml"
        result = api.train(spec, ["train.epochs=2", f"tracking.uri={url}"])
        record = MlflowClient(url).get_run(result.run_id)
        assert record.info.status == "FINISHED"
        assert record.data.metrics["val_accuracy"] == result.metrics["val_accuracy"]
        assert record.data.tags["dlx.strategy"] == "default"
        assert not (Path.cwd() / "mlflow.db").exists()

    def test_a_branch_is_checked_against_the_newest_main_run_found_by_filter(
        self, server, tmp_path
    ):
        import json
        import subprocess

        from dlx import api
        from tests.conftest import ROOT
        from tests.in_process import dlx_in_process

        url, _ = server
        spec = tmp_path / "digits.yaml"
        text = (ROOT / "specs" / "digits_cnn.yaml").read_text()
        spec.write_text(text.replace("name: digits-cnn", "name: digits-branches"))

        def git(*arguments):
            identity = ["-c", "user.name=dlx", "-c", "user.email=dlx@example.com"]
            subprocess.run(["git", *identity, *arguments], cwd=tmp_path, check=True)

        git("init", "-q", "-b", "main")
        git("add", "digits.yaml")
        git("commit", "-q", "-m", "the spec")
        options = [f"tracking.uri={url}", "tracking.log_model=false", "train.epochs=2"]
        older_main = api.train(spec, options).run_id
        main = api.train(spec, options).run_id
        git("checkout", "-q", "-b", "feature")
        feature = api.train(spec, [*options, "train.batch_size=32"]).run_id

        checked = dlx_in_process(
            "baseline",
            "check",
            feature,
            "-f",
            "json",
            "-t",
            "val_accuracy=-1",
            "--against",
            "tags.mlflow.source.git.branch = 'main'",
            "--tracking-uri",
            url,
            cwd=tmp_path,
        )
        assert checked.returncode == 0, checked.stderr
        report = json.loads(checked.stdout)
        assert report["baseline"]["run_id"] == main != older_main  # the newest match
        assert report["baseline"]["git"]["branch"] == "main"
        assert report["now"]["git"]["branch"] == "feature"
        changed = {(c["what"], c["name"]): (c["baseline"], c["now"]) for c in report["changes"]}
        assert changed[("param", "train.batch_size")] == ("64", "32")
        assert changed[("git", "branch")] == ("main", "feature")
        assert ("git", "commit") not in changed  # the same commit, on another branch
        gated = {m["metric"]: m for m in report["metrics"] if m["tolerance"] is not None}
        assert gated["val_accuracy"]["tolerance"] == "-1"  # the command line's, over the spec's
        assert not any(m["failed"] for m in gated.values())
