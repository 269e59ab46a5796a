"""Tables on a terminal: each cell whole, in a column of its own (`dlx.cli.tables`, and the
tables `dlx.cli.render` prints with it)."""

from pathlib import Path

from rich.console import Console

from dlx.cli import render
from dlx.cli.tables import fitted_table
from dlx.deploy.export import Check, Export


def shown(table, width: int) -> list[str]:
    console = Console(width=width, record=True, color_system=None)
    console.print(table)
    return console.export_text().splitlines()


def test_a_table_that_fits_is_boxed_and_one_that_does_not_wraps_its_headers_not_its_values():
    header = ["run", "learning_rate", "steps_per_execution", "val_accuracy"]
    rows = [["ab12cd34", "0.0041234", "14", "0.8528"], ["ef56ab78", "0.0001307", "8", "0.1278"]]
    boxed = shown(fitted_table(None, header, rows, width=120, left=1), 120)
    assert boxed[1] == "┃ run      ┃ learning_rate ┃ steps_per_execution ┃ val_accuracy ┃"
    narrow = shown(fitted_table(None, header, rows, width=40, left=1), 40)
    assert max(len(line) for line in narrow) <= 40
    assert "…" not in "".join(narrow)
    assert narrow[-2].split() == rows[0] and narrow[-1].split() == rows[1]
    assert [line.split() for line in narrow[:-3]] == [
        ["learning_", "steps_per_", "val_"],
        ["run", "rate", "execution", "accuracy"],
    ]


def test_the_export_table_gives_a_litert_model_s_accuracy_a_column_of_its_own(capsys, tmp_path):
    latency = {1: 0.5, 32: 2.0}
    checks = [
        Check("onnx", "model", tmp_path / "model.onnx", 1e-7, 1.0, 10_000, latency),
        Check(
            "litert",
            "model",
            tmp_path / "model.tflite",
            2e-7,
            1.0,
            9_000,
            latency,
            metric=("accuracy", 0.93333),
        ),
    ]
    done = Export("f" * 32, Path("out"), 1e-5, 180, checks, {1: 0.4, 32: 1.5})
    render.export(done)
    lines = capsys.readouterr().out.splitlines()
    header = [cell.strip() for cell in lines[2].split("┃")[1:-1]]
    assert header == [
        "export",
        "file",
        "MB",
        "max abs diff",
        "argmax agreement",
        "accuracy",
        "ms b=1",
        "ms b=32",
    ]
    cells = {
        line.split("│")[1].strip(): [c.strip() for c in line.split("│")[1:-1]]
        for line in lines[4:-1]
    }
    assert cells["litert"][4:6] == ["1.0000", "0.9333"]
    assert cells["onnx"][4:6] == ["1.0000", ""]
    assert cells["keras"][4:6] == ["", ""]
