"""Bad data is refused before a run opens, and `dlx validate` checks the data section.

Each case writes real files and runs the real command: the error names the spec's line and
column, the exit status is 2, there is no traceback, and no run or checkpoint folder is left.
"""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from dlx.cli import app

runner = CliRunner()

SPEC = """\
version: 1
seed: 1
data:
  source: {source}
  validation_split: 0.25
model:
  layers:
    - input: {{shape: {shape}}}
    - flatten
    - dense: {{units: 3, activation: softmax}}
train:
  epochs: 1
  batch_size: 4
  loss: sparse_categorical_crossentropy
"""


def write_spec(source: str, shape: str = "[4]") -> Path:
    spec = Path("spec.yaml")
    spec.write_text(SPEC.format(source=source, shape=shape))
    return spec


def assert_refused_before_the_run(exit_code: int, stderr: str, expected: str) -> None:
    assert exit_code == 2, stderr
    assert stderr.splitlines()[0] == expected
    assert "Traceback" not in stderr
    assert not Path("mlflow.db").exists() and not Path("mlartifacts").exists()
    assert not Path("dlx-checkpoints").exists()


def features(rows: int = 12) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((rows, 4)).astype(np.float32)


def write_csv(cell: str) -> None:
    rows = "".join(f"1,2,{cell if i == 4 else 3},4,{i % 3}\n" for i in range(12))
    Path("data.csv").write_text("a,b,c,d,y\n" + rows)


def labels_beyond_the_units() -> None:
    np.savez("data.npz", x=features(), y=np.array([0, 5, 10] * 4))


def a_nan_label() -> None:
    np.savez("data.npz", x=features(), y=np.array([0.0, 1.0, np.nan] * 4, dtype=np.float32))


def strings_for_inputs() -> None:
    np.savez("data.npz", x=np.array([["a", "b", "c", "d"]] * 12), y=np.arange(12) % 3)


def a_truncated_png() -> None:
    for class_name in ("cat", "dog"):
        Path("pets", class_name).mkdir(parents=True)
        for number in range(3):
            pixels = np.full((8, 8, 3), 40 * number, dtype=np.uint8)
            Image.fromarray(pixels).save(Path("pets", class_name, f"{number}.png"))
    image = Path("pets", "dog", "1.png")
    image.write_bytes(image.read_bytes()[:-30])


TRAIN_CASES = {
    "labels_beyond_the_units": (
        labels_beyond_the_units,
        "{npz: data.npz}",
        "[4]",
        "spec.yaml:4:11: error: data.source: labels go up to 10 but the model's output has "
        "3 units (dense at line 10); sparse_categorical_crossentropy needs labels 0..2",
    ),
    "a_nan_label": (
        a_nan_label,
        "{npz: data.npz}",
        "[4]",
        "spec.yaml:4:17: error: data.source.npz: array 'y' of data.npz holds nan at index [2]: "
        "expected finite numbers (no NaN or infinity)",
    ),
    "strings_for_inputs": (
        strings_for_inputs,
        "{npz: data.npz}",
        "[4]",
        "spec.yaml:4:11: error: data.source: the data's inputs are text but the model's input "
        "'input_layer' expects numbers (float32); a model that reads text starts with "
        "input: {shape: [], dtype: string}",
    ),
    "inf_in_a_csv": (
        lambda: write_csv("inf"),
        "{csv: {path: data.csv, label: y}}",
        "[4]",
        "spec.yaml:4:17: error: data.source.csv: column 'c' of data.csv holds 'inf' on line 6: "
        "expected finite numbers (no NaN or infinity)",
    ),
    "nan_in_a_csv": (
        lambda: write_csv("NaN"),
        "{csv: {path: data.csv, label: y}}",
        "[4]",
        "spec.yaml:4:17: error: data.source.csv: column 'c' of data.csv holds 'NaN' on line 6: "
        "expected finite numbers (no NaN or infinity)",
    ),
    "a_truncated_png": (
        a_truncated_png,
        "{images: {directory: pets, image_size: [8, 8]}}",
        "[8, 8, 3]",
        "spec.yaml:4:32: error: data.source.images.directory: could not read image "
        f"{Path('pets', 'dog', '1.png')}: image file is truncated",
    ),
}


@pytest.mark.parametrize("case", TRAIN_CASES)
def test_bad_data_is_refused_before_the_run_opens(case):
    make, source, shape, expected = TRAIN_CASES[case]
    make()
    spec = write_spec(source, shape)
    result = runner.invoke(app, ["train", str(spec)])
    assert_refused_before_the_run(result.exit_code, result.stderr, expected)


@pytest.mark.parametrize(
    ("loss", "labels", "expected"),
    [
        (
            "categorical_crossentropy",
            [0, 1, 2],
            "the targets have 1 column but the model's output has 3 units (dense at line 10); "
            "categorical_crossentropy needs one-hot targets of 3 columns "
            "(for class ids, use sparse_categorical_crossentropy)",
        ),
        (
            "binary_crossentropy",
            [0, 1, 2],
            "the targets go from 0 to 2; binary_crossentropy needs targets in 0..1",
        ),
        (
            "sparse_categorical_crossentropy",
            [0.0, 1.5, 2.0],
            "sparse_categorical_crossentropy needs one class id per example (0..2); "
            "the targets are shaped [None, 1] with values like [0.0]",
        ),
    ],
)
def test_targets_that_do_not_fit_the_loss(loss, labels, expected):
    np.savez("data.npz", x=features(), y=np.array(labels * 4))
    spec = write_spec("{npz: data.npz}")
    result = runner.invoke(app, ["train", str(spec), "--set", f"train.loss={loss}"])
    assert_refused_before_the_run(
        result.exit_code, result.stderr, f"spec.yaml:4:11: error: data.source: {expected}"
    )


@pytest.mark.slow
def test_bad_labels_in_a_real_process_leave_no_traceback_run_or_checkpoints():
    labels_beyond_the_units()
    spec = write_spec("{npz: data.npz}")
    result = subprocess.run(
        [sys.executable, "-m", "dlx", "train", str(spec)],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert_refused_before_the_run(
        result.returncode, result.stderr, TRAIN_CASES["labels_beyond_the_units"][3]
    )


# dlx validate: the data section, checked without reading the data


def test_validate_reports_the_data_sections_problems_with_the_models():
    Path("data.csv").write_text("a,b,label\n1,2,0\n")
    spec = Path("spec.yaml")
    spec.write_text(
        textwrap.dedent(
            """\
            version: 1
            data:
              source: {csv: {path: data.csv, label: lable}}
              validation: {source: {sklearn: digts}}
            model:
              layers:
                - input: {shape: [2]}
                - dens: 3
            """
        )
    )
    result = runner.invoke(app, ["validate", str(spec)])
    assert result.exit_code == 2
    lines = [line for line in result.stderr.splitlines() if line.startswith("spec.yaml:")]
    assert lines == [
        "spec.yaml:3:41: error: data.source.csv.label: column 'lable' not in data.csv "
        "(did you mean 'label'?). Columns: a, b, label",
        "spec.yaml:4:34: error: data.validation.source.sklearn: unknown scikit-learn dataset "
        "'digts' (did you mean 'digits' or 'diabetes'?). Expected one of: "
        + result.stderr.split("Expected one of: ")[1].splitlines()[0],
        "spec.yaml:8:7: error: model.layers.1.dens: unknown layer 'dens' (did you mean "
        + result.stderr.split("unknown layer 'dens' (did you mean ")[1].splitlines()[0],
    ]
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{npz: data.npz}", "spec.yaml:4:17: error: data.source.npz: no such file: data.npz"),
        ("{images: pets}", "spec.yaml:4:20: error: data.source.images: no class sub-folders in "),
        ("{text: {directory: reviews}}", "spec.yaml:4:30: error: data.source.text.directory: "),
        ("{python: 'nowhere_data:load'}", "spec.yaml:4:20: error: data.source.python: no module"),
        ("{keras: mnits}", "spec.yaml:4:19: error: data.source.keras: unknown keras dataset"),
        ("{sklearn: digts}", "spec.yaml:4:21: error: data.source.sklearn: unknown scikit-learn"),
    ],
)
def test_validate_checks_the_data_source(source, expected):
    Path("pets").mkdir()
    spec = write_spec(source)
    result = runner.invoke(app, ["validate", str(spec)])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(expected)
    assert "Traceback" not in result.output


def test_validate_imports_the_python_source_as_training_does():
    Path("dlx_cli_test_data.py").write_text(
        "def load(rows=12):\n    return [[0.0] * 4] * rows, [0] * rows\n"
    )
    spec = write_spec("{python: {function: 'dlx_cli_test_data:load', row: 3}}")
    result = runner.invoke(app, ["validate", str(spec)])
    assert result.exit_code == 2
    assert result.stderr.startswith(
        "spec.yaml:4:62: error: data.source.python.row: unknown argument 'row' for "
        "dlx_cli_test_data:load (did you mean 'rows'?). Expected: rows"
    )
    spec.write_text(spec.read_text().replace("row: 3", "rows: 3"))
    assert runner.invoke(app, ["validate", str(spec)]).exit_code == 0


@pytest.mark.parametrize("batch_size", ["1000000000000000000000000000000", "2147483648", "0"])
def test_validate_refuses_a_batch_size_out_of_range(batch_size):
    labels_beyond_the_units()
    spec = write_spec("{npz: data.npz}")
    result = runner.invoke(app, ["validate", str(spec), "--set", f"train.batch_size={batch_size}"])
    assert result.exit_code == 2
    assert result.stderr.startswith("--set:1:18: error: train.batch_size: expected a value ")
    assert "Traceback" not in result.output


def test_an_unexpected_error_is_one_line_and_exit_1_and_the_other_specs_still_checked():
    Path("dlx_cli_broken_data.py").write_text("raise RuntimeError('no data\\nhere')\n")
    broken = write_spec("{python: 'dlx_cli_broken_data:load'}")
    fine = Path("fine.yaml")
    fine.write_text(
        SPEC.format(source="{synthetic: {samples: 16, x_shape: [4], classes: 3}}", shape="[4]")
    )
    result = runner.invoke(app, ["validate", str(broken), str(fine)])
    assert result.exit_code == 1, result.output
    assert result.stderr == "error: RuntimeError: no data here (--debug for the traceback)\n"
    assert result.stdout == "fine.yaml: ok\n"
    debug = runner.invoke(app, ["--debug", "validate", str(broken)])
    assert isinstance(debug.exception, RuntimeError)  # raised again, for its traceback


def test_inspect_describes_the_model_whose_data_file_is_missing():
    spec = write_spec("{npz: missing.npz}")
    assert runner.invoke(app, ["validate", str(spec)]).exit_code == 2
    result = runner.invoke(app, ["inspect", str(spec), "--format", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["layers"][-1]["output_shape"] == [None, 3]
