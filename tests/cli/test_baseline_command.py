"""`dlx baseline write` and `dlx baseline check` on runs trained for the purpose, end to end.

The comparison against a run found by filter on a real `mlflow server` is in
tests/track/test_server.py; the verdicts and the file, without training, in
tests/track/test_baseline.py.
"""

import json

import matplotlib.image
import pytest
from markdown_it import MarkdownIt

from dlx import api
from tests.conftest import ROOT
from tests.in_process import dlx_in_process

pytestmark = pytest.mark.slow  # the module's fixture trains

DETERMINISTIC = "\nruntime: {deterministic: true}\n"
"""Added to specs/digits_cnn.yaml (whose gate: val_accuracy -0.01, val_loss +10%)."""


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The deterministic digits spec, with its gate, in a folder with its store, and four runs:
    `baseline` (3 epochs), `shorter` (1 epoch), `other` (the same under another name) and
    `again` (the baseline's spec again, the newest)."""
    folder = tmp_path_factory.mktemp("baseline")
    spec = folder / "digits.yaml"
    text = (ROOT / "specs" / "digits_cnn.yaml").read_text()
    spec.write_text(text.replace("epochs: 20", "epochs: 3") + DETERMINISTIC)
    common = [f"tracking.uri=sqlite:///{folder / 'mlflow.db'}", "tracking.log_model=false"]
    ids = {
        "baseline": api.train(spec, common).run_id,
        "shorter": api.train(spec, ["train.epochs=1", *common]).run_id,
        "other": api.train(spec, ["name=digits-other", *common]).run_id,
        "again": api.train(spec, common).run_id,
    }
    return folder, ids


def dlx(folder, *arguments):
    return dlx_in_process(
        *arguments, "--tracking-uri", f"sqlite:///{folder / 'mlflow.db'}", cwd=folder
    )


def written(folder, run_id, *output):
    result = dlx(folder, "baseline", "write", run_id, *output)
    assert result.returncode == 0, result.stderr
    return result


class TestRuns:
    """The tests of the module's `runs`: together in one worker, which trains them once
    (tests/conftest.py)."""

    def test_the_same_deterministic_spec_again_is_exactly_equal(self, runs):
        folder, ids = runs
        shown = written(folder, ids["baseline"]).stdout
        assert f"baseline of run {ids['baseline'][:8]}" in shown
        assert "digits.baseline.json" in shown  # beside the spec, named after it
        saved = json.loads((folder / "digits.baseline.json").read_text())
        assert saved["run_id"] == ids["baseline"] and saved["deterministic"] is True
        assert len(saved["history"]["val_accuracy"]) == 3
        assert {"dlx", "keras", "tensorflow", "mlflow", "python"} <= set(saved["versions"])

        result = dlx(folder, "baseline", "check", "digits.yaml")  # the newest run: `again`
        assert result.returncode == 0, result.stderr
        assert "every metric must be exactly equal" in result.stdout
        assert "passed (2 gated metrics within tolerance)" in result.stdout
        report = json.loads(dlx(folder, "baseline", "check", ids["again"], "-f", "json").stdout)
        assert report["passed"] and report["identical"]
        assert report["now"]["run_id"] == ids["again"]
        assert {m["verdict"] for m in report["metrics"]} == {"same"}
        assert all(m["delta"] == 0 for m in report["metrics"])

    def test_fewer_epochs_fail_the_gate_and_the_report_names_the_metrics(self, runs, tmp_path):
        folder, ids = runs
        written(folder, ids["baseline"], "-o", str(tmp_path / "main.json"))
        plot = tmp_path / "curves.png"
        against = ["--against", str(tmp_path / "main.json")]
        result = dlx(folder, "baseline", "check", ids["shorter"], *against, "--plot", str(plot))
        assert result.returncode == 3, result.stderr
        assert "val_accuracy is worse than the baseline's beyond its tolerance (-0.01)" in (
            result.stderr
        )
        assert "worse than the baseline: val_accuracy, val_loss" in result.stdout
        assert "train.epochs" in result.stdout  # what changed, above the table
        assert matplotlib.image.imread(plot).shape[1] > 600  # two panels: val_accuracy, val_loss

        markdown = dlx(folder, "baseline", "check", ids["shorter"], *against, "-f", "markdown")
        assert markdown.returncode == 3
        html = MarkdownIt("commonmark").enable("table").render(markdown.stdout)
        before = json.loads((tmp_path / "main.json").read_text())["metrics"]["val_accuracy"]
        assert html.count("<table>") == 2  # what changed, and the metrics
        assert f"<td>{before:.4g}</td>" in html
        assert "<td><code>val_accuracy</code> ↑</td>" in html
        assert "<td>❌ worse</td>" in html
        assert "<td>param <code>train.epochs</code></td>" in html
        assert "<code>3</code>" in html and "<code>1</code>" in html
        assert len(markdown.stdout) < 4000  # small enough for a comment

    def test_a_change_within_the_tolerance_given_passes(self, runs, tmp_path):
        folder, ids = runs
        written(folder, ids["baseline"], "-o", str(tmp_path / "main.json"))
        loose = ["-t", "val_accuracy=-0.5", "--tolerance", "val_loss=+1000%"]
        result = dlx(
            folder, "baseline", "check", ids["shorter"], "--against", ids["baseline"], *loose
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.count("within tolerance") >= 3  # two rows and the verdict
        bad = dlx(folder, "baseline", "check", ids["shorter"], "-t", "val_loss")
        assert bad.returncode == 2 and "expected METRIC=TOLERANCE" in bad.stderr
        wrong = dlx(folder, "baseline", "check", ids["shorter"], "-t", "val_loss=-1%")
        assert wrong.returncode == 2 and "write its tolerance as +1%" in wrong.stderr

    def test_a_baseline_of_another_spec_or_data_is_said_first(self, runs, tmp_path):
        folder, ids = runs
        path = tmp_path / "other.json"
        written(folder, ids["other"], "-o", str(path))
        result = dlx(folder, "baseline", "check", ids["again"], "--against", str(path))
        assert result.returncode == 0, result.stderr  # the same numbers: no metric is worse
        first = result.stdout.splitlines()[0]
        assert first == "The baseline is of another spec: digits-other (now digits-cnn)."
        assert "must be exactly equal" not in result.stdout

        saved = json.loads(path.read_text())
        saved.update(name="digits-cnn", data_fingerprint="0" * 64)
        path.write_text(json.dumps(saved))
        result = dlx(
            folder, "baseline", "check", ids["again"], "--against", str(path), "-f", "markdown"
        )
        assert "> The baseline was trained on other data" in result.stdout.split("Run `")[0]

    def test_an_identical_run_that_differs_did_not_reproduce(self, runs, tmp_path):
        folder, ids = runs
        path = tmp_path / "main.json"
        written(folder, ids["baseline"], "-o", str(path))
        saved = json.loads(path.read_text())
        saved["metrics"]["accuracy"] += 1e-7  # ungated, and far within any tolerance
        path.write_text(json.dumps(saved))
        result = dlx(folder, "baseline", "check", ids["again"], "--against", str(path))
        assert result.returncode == 3
        assert "did not reproduce (accuracy differ" in result.stdout
        assert "accuracy differs from the baseline's" in result.stderr

    def test_what_cannot_be_checked_is_said(self, runs, tmp_path):
        folder, ids = runs
        missing = dlx(folder, "baseline", "check", ids["shorter"], "--against", "nowhere.json")
        assert missing.returncode == 2
        assert "no baseline file nowhere.json" in missing.stderr
        none = dlx(folder, "baseline", "check", ids["again"], "--against", "tags.x = 'y'")
        assert none.returncode == 2 and "no FINISHED run" in none.stderr
        unknown = dlx(folder, "baseline", "write", "0123abc")
        assert unknown.returncode == 2 and "no run with id '0123abc'" in unknown.stderr
        (tmp_path / "a-file").write_text("")
        unwritable = dlx(
            folder, "baseline", "write", ids["baseline"], "-o", str(tmp_path / "a-file" / "b.json")
        )
        assert unwritable.returncode == 2
        assert "cannot write the baseline file" in unwritable.stderr
        assert list(tmp_path.iterdir()) == [tmp_path / "a-file"]  # nothing half-written
