"""`dlx compare` of a sweep's runs in a terminal of 120 columns: each swept param by its short
name with its path in a legend, numbers with the digits that tell the runs apart, nothing cut;
epochs counted from 1; the plot's legend beside its panels. The runs are real runs of a real
store, written by MLflow's client: what is compared is how they are shown, not training."""

import json

import pytest
from mlflow import MlflowClient

from dlx import api
from dlx.track.compare import curves_figure
from dlx.track.read import open_store
from tests.in_process import dlx_in_process

LEARNING_RATE = "train.optimizer.adam.learning_rate"
FIRST_FILTERS = "model.layers.1.conv2d.filters"
SECOND_FILTERS = "model.layers.3.conv2d.filters"
BATCH_SIZE = "train.batch_size"

# Two learning rates alike to 4 significant digits, and a run whose best epoch is its second.
SWEPT = [
    ({LEARNING_RATE: "0.004123412345", FIRST_FILTERS: "16", BATCH_SIZE: "32"}, [0.5, 0.7, 0.9]),
    ({LEARNING_RATE: "0.004123187654", FIRST_FILTERS: "32", BATCH_SIZE: "64"}, [0.4, 0.8, 0.6]),
    ({LEARNING_RATE: "0.0001307291", FIRST_FILTERS: "64", BATCH_SIZE: "96"}, [0.1, 0.2, 0.3]),
]


@pytest.fixture
def sweep_runs(store_uri) -> list[str]:
    """Three runs of a sweep, as `dlx sweep` names them, with three epochs of metrics each."""
    client = MlflowClient(store_uri)
    experiment = client.create_experiment("digits-sweep")
    run_ids = []
    for number, (params, accuracies) in enumerate(SWEPT):
        run = client.create_run(experiment, run_name=f"digits-sweep-{number}")
        for name, value in {**params, SECOND_FILTERS: str(8 * (number + 1)), "seed": "42"}.items():
            client.log_param(run.info.run_id, name, value)
        for step, accuracy in enumerate(accuracies):
            client.log_metric(run.info.run_id, "val_accuracy", accuracy, step=step)
            client.log_metric(run.info.run_id, "val_loss", 1 - accuracy, step=step)
            client.log_metric(run.info.run_id, "accuracy", accuracy + 0.01, step=step)
            client.log_metric(run.info.run_id, "loss", 1.01 - accuracy, step=step)
        client.set_terminated(run.info.run_id)
        run_ids.append(run.info.run_id)
    return run_ids


def test_a_sweep_s_runs_fit_120_columns_by_short_names_with_every_value_whole(
    store_uri, sweep_runs, tmp_path
):
    done = dlx_in_process(
        "compare",
        "-e",
        "digits-sweep",
        "--sort",
        "val_accuracy",
        "--tracking-uri",
        store_uri,
        cwd=tmp_path,
        env={"COLUMNS": "120"},
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert max(len(line) for line in lines) <= 120, done.stdout
    assert "…" not in done.stdout
    # A row per run, its values whole: the learning rates with the digits that tell them
    # apart, the best epoch counted from 1 as training shows it.
    rows = {line[:8]: line.split() for line in lines if line[:8] in {r[:8] for r in sweep_runs}}
    assert {"0.0041234", "16", "32", "0.9", "3"} <= set(rows[sweep_runs[0][:8]])
    assert {"0.0041232", "32", "64", "0.6", "2"} <= set(rows[sweep_runs[1][:8]])
    assert {"0.00013073", "64", "96", "0.3", "3"} <= set(rows[sweep_runs[2][:8]])
    # The params by their short names; their paths once each, in the legend under the table.
    legend = " ".join(done.stdout.split())
    for short, path in [
        ("1.conv2d.filters", FIRST_FILTERS),
        ("3.conv2d.filters", SECOND_FILTERS),
        ("batch_size", BATCH_SIZE),
        ("learning_rate", LEARNING_RATE),
    ]:
        assert f"{short} = {path}" in legend
        assert done.stdout.count(path) == 1
    header, _ = api.compare(experiment="digits-sweep", tracking_uri=store_uri).rows(short=True)
    assert header[3:7] == ["1.conv2d.filters", "3.conv2d.filters", "batch_size", "learning_rate"]


def test_json_keeps_its_keys_and_adds_the_short_names_and_the_best_epoch_from_1(
    store_uri, sweep_runs, tmp_path
):
    done = dlx_in_process(
        *("compare", "-e", "digits-sweep", "--sort", "val_accuracy", "--format", "json"),
        *("--tracking-uri", store_uri),
        cwd=tmp_path,
    )
    records = json.loads(done.stdout)
    assert [r["run_id"] for r in records] == sweep_runs
    assert [r["run_name"] for r in records] == [
        "digits-sweep-0",
        "digits-sweep-1",
        "digits-sweep-2",
    ]
    assert records[0]["params"][LEARNING_RATE] == "0.004123412345"  # as logged, by its path
    assert records[0]["param_names"] == {
        "1.conv2d.filters": FIRST_FILTERS,
        "3.conv2d.filters": SECOND_FILTERS,
        "batch_size": BATCH_SIZE,
        "learning_rate": LEARNING_RATE,
    }
    assert [r["best_epoch"] for r in records] == [3, 2, 3]


def test_the_plot_counts_epochs_from_1_and_its_legend_covers_no_panel(store_uri, sweep_runs):
    comparison = api.compare(sweep_runs, tracking_uri=store_uri)
    figure = curves_figure(open_store(store_uri), comparison)
    assert all(axes.get_legend() is None for axes in figure.axes)
    (legend,) = figure.legends
    assert [text.get_text() for text in legend.get_texts()] == [
        f"{run_id[:8]} digits-sweep-{number}" for number, run_id in enumerate(sweep_runs)
    ]
    assert all(list(line.get_xdata()) == [1, 2, 3] for line in figure.axes[0].get_lines())
    figure.canvas.draw()
    box = legend.get_window_extent()
    assert not any(box.overlaps(axes.get_window_extent()) for axes in figure.axes)
