"""`dlx data`: a spec's splits, how workers share them, and what bounds training; no run."""

import json

import pytest
from typer.testing import CliRunner

from dlx.cli import app
from tests.conftest import ROOT
from tests.data.test_stream import write_folder

DIGITS = str(ROOT / "specs" / "digits_cnn.yaml")
runner = CliRunner()

pytestmark = pytest.mark.slow  # every test here trains a few steps


def images_spec(folder):
    """A spec that streams 60 PNG images of three classes (48 of them for training)."""
    write_folder(folder / "pets")
    spec = folder / "pets.yaml"
    spec.write_text(
        "version: 1\nname: pets\n"
        "data:\n  source: {images: {directory: pets, image_size: [8, 8]}}\n"
        "  test_split: 0.2\n"
        "model:\n  layers:\n    - input: {shape: [8, 8, 3]}\n    - flatten\n"
        "    - dense: {units: 3, activation: softmax}\n"
        "train:\n  batch_size: 16\n  loss: sparse_categorical_crossentropy\n"
    )
    return spec


def data(*arguments, cwd):
    result = runner.invoke(app, ["data", *map(str, arguments)])
    assert not (cwd / "mlflow.db").exists()  # no run, no store
    return result


def test_an_images_folder_as_a_table(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = data(images_spec(tmp_path), "--workers", "2", cwd=tmp_path)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    train = next(line for line in lines if "train" in line).split("│")
    files, examples = int(train[2]), int(train[3])
    assert files == examples and 20 < files < 60
    assert "x (16, 8, 8, 3) float32" in result.stdout
    per_worker = str(files // 2) if files % 2 == 0 else f"{files // 2}-{files // 2 + 1}"
    assert f"2 workers: sharded by file: {per_worker} files per worker" in result.stdout
    assert "cache: memory" in result.stdout  # auto: the decoded images are small
    assert "input pipeline:" in result.stdout and "training:" in result.stdout
    assert any(line.startswith(("input-bound: ", "compute-bound: ")) for line in lines)


def test_an_images_folder_as_json(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = data(images_spec(tmp_path), "--workers", "64", "--format", "json", cwd=tmp_path)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    train, test = report["splits"]
    assert (train["name"], test["name"]) == ("train", "test")
    assert train["files"] + test["files"] == train["examples"] + test["examples"] == 60
    assert train["classes"] == 3
    assert train["batch"] == {
        "x": {"shape": [16, 8, 8, 3], "dtype": "float32"},
        "y": {"shape": [16], "dtype": "int32"},
    }
    assert (report["workers"], report["shard_policy"], report["files_per_worker"]) == (
        64,
        "data",
        None,
    )
    assert report["sharding"] == f"sharded by example: {train['files']} files for 64 workers"
    # One CPU device a worker: 64 of them cannot share a batch of 16.
    assert (report["backend"], report["devices"], report["per_device_batch"]) == (
        "tensorflow",
        ["CPU:0"],
        0,
    )
    assert report["input_examples_per_second"] > 0 and report["train_examples_per_second"] > 0
    faster_input = report["input_examples_per_second"] >= report["train_examples_per_second"]
    assert report["verdict"] == ("compute-bound" if faster_input else "input-bound")
    assert report["advice"]


def test_an_in_memory_source_as_json_and_as_a_table(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = data(DIGITS, "--workers", "2", "--format", "json", cwd=tmp_path)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert [s["name"] for s in report["splits"]] == ["train", "validation", "test"]
    assert sum(s["examples"] for s in report["splits"]) == 1797  # sklearn's digits
    assert all(s["files"] is None and s["classes"] == 10 for s in report["splits"])
    assert report["cache"] is None and report["shard_policy"] == "data"
    assert report["sharding"] == "sharded by example: the data is in memory, not read from files"
    assert report["per_device_batch"] == 32  # digits_cnn's 64, across 2 workers' CPUs

    table = data(DIGITS, cwd=tmp_path)
    assert table.exit_code == 0, table.output
    assert "1 worker: no sharding: it reads every example" in table.stdout
    assert "backend: tensorflow, 1 device (CPU:0), 64 examples per device a step" in table.stdout
    assert "x (64, 8, 8, 1) float32" in table.stdout


def test_a_spec_whose_data_is_missing_is_exit_2_at_its_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = images_spec(tmp_path)
    spec.write_text(spec.read_text().replace("directory: pets", "directory: nowhere"))
    result = data(spec, cwd=tmp_path)
    assert result.exit_code == 2
    assert "pets.yaml:4:" in result.stderr and "nowhere" in result.stderr
    assert "Traceback" not in result.output
