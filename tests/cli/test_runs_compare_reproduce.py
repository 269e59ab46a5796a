"""`dlx runs`, `dlx compare` and `dlx reproduce` against a real store written by `dlx train`."""

import csv
import io
import json
import shutil
import subprocess
import sys

import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from dlx import api
from dlx.cli import app
from dlx.errors import DlxError, ExpectationError
from tests.conftest import ROOT

pytestmark = pytest.mark.slow  # every test here trains

DIGITS = ROOT / "specs" / "digits_cnn.yaml"
PLUGIN = ROOT / "tests" / "train" / "plugins_for_tests.py"
runner = CliRunner()


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A failed run (experiment `failing`), then two digits runs with 2 and 1 epochs."""
    folder = tmp_path_factory.mktemp("store")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    shutil.copy(PLUGIN, folder / PLUGIN.name)
    failing = folder / "failing.yaml"
    failing.write_text(
        DIGITS.read_text()
        .replace("name: digits-cnn", "name: failing\nplugins: [plugins_for_tests]")
        .replace(
            "  metrics: [accuracy]",
            "  metrics: [accuracy]\n  callbacks:\n    - dlx_tests>FailAtEpoch: {epoch: 1}",
        )
    )
    common = [f"tracking.uri={uri}", "tracking.log_model=false"]
    with pytest.raises(Exception, match="training failed"):
        api.train(failing, ["train.epochs=2", *common])
    # The second spec lives in a folder that is then deleted: reproduce needs only the log.
    gone = folder / "gone"
    gone.mkdir()
    shutil.copy(DIGITS, gone / "digits_cnn.yaml")
    older = api.train(gone / "digits_cnn.yaml", ["train.epochs=2", *common])
    shutil.rmtree(gone)
    newer = api.train(DIGITS, ["train.epochs=1", *common])
    return uri, older.run_id, newer.run_id


def invoke(uri, *args):
    return runner.invoke(app, [*args, "--tracking-uri", uri])


class TestStore:
    """The tests of the module's `store`: together in one worker, which fills it once
    (tests/conftest.py)."""

    def test_runs_lists_newest_first_in_every_format(self, store):
        uri, older, newer = store
        records = json.loads(invoke(uri, "runs", "--format", "json").stdout)
        assert [r["run_id"] for r in records] == [newer, older]
        assert {"run_name", "status", "start_time", "duration_s", "metrics"} <= set(records[0])
        assert "val_accuracy" in records[0]["metrics"]
        table = invoke(uri, "runs")
        assert table.exit_code == 0 and newer[:8] in table.stdout and "FINISHED" in table.stdout
        rows = list(csv.reader(io.StringIO(invoke(uri, "runs", "-f", "csv", "-n", "1").stdout)))
        assert rows[0][:5] == ["run", "name", "status", "start", "duration"] and len(rows) == 2

    def test_failed_runs_are_listed_with_their_status(self, store):
        uri, _, _ = store
        result = invoke(uri, "compare", "--experiment", "failing", "--format", "json")
        (record,) = json.loads(result.stdout)
        assert record["status"] == "FAILED"
        assert "FAILED" in invoke(uri, "runs", "-e", "failing").stdout

    def test_compare_shows_only_the_param_that_differs_and_formats_agree(self, store):
        uri, older, newer = store
        records = json.loads(invoke(uri, "compare", "--format", "json").stdout)
        assert [r["run_id"] for r in records] == [newer, older]
        for record in records:
            assert list(record["params"]) == ["train.epochs"]
            assert {"run_id", "run_name", "status", "params", "metrics"} <= set(record)
        markdown = invoke(uri, "compare", "--format", "markdown").stdout
        header, _, *rows = [line for line in markdown.splitlines() if line.startswith("|")][:4]
        columns = [c.strip() for c in header.strip("|").split("|")]
        assert columns[:4] == ["run", "name", "status", "train.epochs"]
        for row, record in zip(rows, records, strict=True):
            cells = dict(
                zip(columns, [c.strip().strip("*") for c in row.strip("|").split("|")], strict=True)
            )
            assert cells["run"] == record["run_id"][:8]
            assert cells["train.epochs"] == record["params"]["train.epochs"]
            assert float(cells["val_accuracy"]) == pytest.approx(
                record["metrics"]["val_accuracy"], rel=1e-3
            )

    def test_two_runs_show_deltas_and_the_spec_diff(self, store):
        uri, older, newer = store
        result = invoke(uri, "compare", older[:6], newer, "--format", "markdown")
        assert result.exit_code == 0, result.output
        assert f"| metric | {older[:8]} | {newer[:8]} | delta |" in result.stdout
        assert "-  epochs: 2\n+  epochs: 1" in result.stdout
        assert "```diff" in result.stdout

    def test_the_api_returns_the_runs_and_their_comparison_as_data(self, store):
        uri, older, newer = store
        listing = api.runs(tracking_uri=uri)
        assert [r.run_id for r in listing.runs] == [newer, older]
        assert listing.runs[0].status == "FINISHED" and listing.runs[0].duration_s > 0
        assert "val_accuracy" in listing.runs[0].metrics
        assert [r.run_id for r in api.runs(limit=1, tracking_uri=uri).runs] == [newer]
        (failed,) = api.runs("failing", tracking_uri=uri).runs
        assert failed.status == "FAILED"

        pair = api.compare([older[:6], newer], tracking_uri=uri)
        assert [r.info.run_id for r in pair.runs] == [older, newer]
        assert pair.params == ["train.epochs"]
        deltas = {name: (before, after) for name, before, after in pair.deltas}
        assert deltas["val_accuracy"] == tuple(r.data.metrics["val_accuracy"] for r in pair.runs)
        assert "-  epochs: 2\n+  epochs: 1" in pair.spec_diff
        assert api.compare([older, newer], diff=False, tracking_uri=uri).deltas is None
        by_spec = api.compare([str(DIGITS)], sort="val_loss", tracking_uri=uri)
        assert {r.info.run_id for r in by_spec.runs} == {older, newer}
        assert set(by_spec.best_epoch) == {older, newer}
        with pytest.raises(DlxError, match="no runs to compare"):
            api.compare(filter="params.`train.epochs` = '7'", tracking_uri=uri)

    def test_sort_plot_metric_and_all_params(self, store, tmp_path):
        uri, older, newer = store
        plot = tmp_path / "curves.png"
        result = invoke(
            uri,
            "compare",
            "--sort",
            "val_loss",
            "-m",
            "val_loss",
            "--all-params",
            "--plot",
            str(plot),
            "--format",
            "csv",
        )
        rows = list(csv.reader(io.StringIO(result.stdout)))
        assert rows[0][-2:] == ["val_loss", "best epoch (val_loss)"]
        assert "seed" in rows[0] and "train.epochs" in rows[0]
        losses = [float(r[-2]) for r in rows[1:]]
        assert losses == sorted(losses)
        assert plot.read_bytes().startswith(b"\x89PNG")

    def test_bad_references_are_usage_errors(self, store):
        uri, _, _ = store
        assert invoke(uri, "compare", "nosuchrun").exit_code == 2
        assert "no experiment 'digits'" in invoke(uri, "runs", "-e", "digits").stderr
        assert invoke(uri, "compare", "--filter", "params.x ==").exit_code == 2
        assert runner.invoke(app, ["runs"]).exit_code == 2  # no store in an empty directory

    def test_compare_imports_no_tensorflow_or_keras(self, store):
        uri, _, _ = store
        done = subprocess.run(
            [
                sys.executable,
                "-X",
                "importtime",
                "-m",
                "dlx",
                "compare",
                "--format",
                "json",
                "--tracking-uri",
                uri,
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        imported = {line.split("|")[-1].strip().split(".")[0] for line in done.stderr.splitlines()}
        assert not imported & {"tensorflow", "keras"}
        assert len(json.loads(done.stdout)) == 2

    def test_reproduce_from_an_empty_directory_exits_0(self, store, tmp_path, monkeypatch):
        uri, older, _ = store
        monkeypatch.chdir(tmp_path)
        result = invoke(uri, "reproduce", older[:10])
        assert result.exit_code == 0, result.output
        assert "reproduced: every final metric within 0" in result.stdout
        assert not list(tmp_path.iterdir())
        client = MlflowClient(uri)
        copies = client.search_runs(
            [client.get_run(older).info.experiment_id],
            filter_string=f"tags.`dlx.reproduction_of` = '{older}'",
        )
        assert len(copies) == 1 and copies[0].info.status == "FINISHED"
        original = client.get_run(older).data
        assert copies[0].data.tags["dlx.spec_hash"] == original.tags["dlx.spec_hash"]

    def test_reproduce_exits_3_when_a_metric_differs(self, store):
        uri, _, newer = store
        client = MlflowClient(uri)
        client.log_metric(newer, "val_accuracy", 0.123, step=99)  # the record now disagrees
        result = invoke(uri, "reproduce", newer, "--tolerance", "0.01")
        assert result.exit_code == 3
        assert "not reproduced: 1 metric(s) differ by more than 0.01: val_accuracy" in result.stderr
        with pytest.raises(ExpectationError) as raised:
            api.reproduce(newer, tolerance=0.01, tracking_uri=uri)
        assert raised.value.failures == ["val_accuracy"]
        assert raised.value.result.original_run_id == newer  # the result, for the CLI to show

    def test_the_direct_sqlite_reader_agrees_with_mlflows_client(self, store):
        from dlx.track.read import MlflowStore, SqliteStore, open_store

        uri, older, newer = store
        direct, client = open_store(uri), MlflowStore(uri)
        assert isinstance(direct, SqliteStore)
        assert isinstance(open_store(uri, filter="params.seed = '42'"), MlflowStore)
        assert sorted(direct.experiments(), key=str) == sorted(client.experiments(), key=str)
        experiment = direct.experiment(None)
        assert experiment == client.experiment(None)
        for mine, theirs in zip(direct.runs(experiment), client.runs(experiment), strict=True):
            for name in ("run_id", "run_name", "status", "start_time", "end_time", "experiment_id"):
                assert getattr(mine.info, name) == getattr(theirs.info, name)
            assert mine.data.params == theirs.data.params
            assert mine.data.metrics == theirs.data.metrics
            assert mine.data.tags == theirs.data.tags
        assert direct.history(older, "val_loss") == client.history(older, "val_loss")
        assert direct.spec_text(newer) == client.spec_text(newer)

    def test_filter_goes_through_mlflow(self, store):
        uri, _, newer = store
        result = invoke(uri, "compare", "--filter", "params.`train.epochs` = '1'", "-f", "json")
        records = json.loads(result.stdout)
        assert newer in [r["run_id"] for r in records]  # with its reproductions, if made
        assert all(r["params"].get("train.epochs", "1") == "1" for r in records)
        assert "FAILED" not in result.stdout
