"""How `dlx sweep` shows its trials: a live table on a terminal, a line per trial otherwise."""

from rich.console import Console

from dlx.cli import render
from dlx.sweep import SweepResult, TrialRow

LR = "train.optimizer.adam.learning_rate"


def result() -> SweepResult:
    done = TrialRow(0, "COMPLETE", 0.9125, {LR: 0.0123, "units": 32}, ["a" * 32], 4.2, "", 3)
    pruned = TrialRow(2, "PRUNED", None, {LR: 3.0, "units": 8}, ["b" * 32], 1.0, "", 1)
    running = TrialRow(1, "RUNNING", None, {LR: 0.002}, [], 0.0, "", 2)
    found = SweepResult("f" * 32, "sqlite:///optuna.db", "val_accuracy", "max")
    found.trials = [done, running, pruned]
    found.best = done
    return found


def test_the_live_table_shows_each_trial_by_number_with_its_values_metric_and_epochs():
    console = Console(width=200, record=True, color_system=None)
    console.print(render.sweep_table(result()))
    lines = console.export_text().splitlines()
    header = next(line for line in lines if "trial" in line)
    for name in ("state", "learning_rate", "units", "val_accuracy", "epochs"):
        assert name in header
    assert lines[-1] == f"learning_rate = {LR}"  # the short names' paths, under the table
    rows = [line.split("│")[1:-1] for line in lines if line.startswith("│ ")]
    cells = [[cell.strip() for cell in row] for row in rows]
    assert cells == [
        ["0", "COMPLETE", "0.0123", "32", "0.9125", "3"],
        ["1", "RUNNING", "0.002", "", "", "2"],
        ["2", "PRUNED", "3", "8", "", "1"],
    ]


def test_off_a_terminal_each_trial_is_a_line_with_its_state_value_run_and_values(capsys):
    for row in result().trials:
        if row.state != "RUNNING":
            render.sweep_trial(row)
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        f"trial 0 COMPLETE 0.9125 in 4.2s: run {'a' * 32} {LR}=0.0123 units=32",
        f"trial 2 PRUNED in 1.0s: run {'b' * 32} {LR}=3 units=8",
    ]


def test_the_summary_fits_120_columns_by_short_names_and_digits_that_tell_values_apart(
    capsys, monkeypatch
):
    found = result()
    found.trials[0].params[LR] = 0.0041234123
    found.trials[2].params[LR] = 0.0041231876
    found.trials[1].state, found.trials[1].value = "COMPLETE", 0.9
    found.trials[1].params.update({"units": 16, "model.layers.3.conv2d.filters": 8})
    found.trials[1].run_ids.append("c" * 32)
    monkeypatch.setenv("COLUMNS", "120")
    render.sweep_result(found)
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= 120 and "…" not in out
    header = next(line for line in lines if line.startswith("┃"))
    assert [cell.strip() for cell in header.split("┃")[1:-1]] == [
        *("trial", "state", "val_accuracy", "filters", "learning_rate", "units", "run")
    ]
    assert "0.0041234" in out and "0.0041232" in out  # alike to 4 digits, told apart by 5
    legend = " ".join(out.split())
    assert f"filters = model.layers.3.conv2d.filters, learning_rate = {LR}" in legend
