"""The command line through Typer's runner, and its start-up cost in a real subprocess."""

import json
import os
import signal
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from dlx import __version__
from dlx.cli import app
from dlx.cli.exiting import state as _state
from tests.conftest import ROOT
from tests.in_process import dlx_in_process

DIGITS = str(ROOT / "specs" / "digits_cnn.yaml")
runner = CliRunner()


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"dlx {__version__}"


def test_help_imports_no_tensorflow_keras_or_mlflow():
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "dlx", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "validate" in result.stdout
    imported = {line.split("|")[-1].strip().split(".")[0] for line in result.stderr.splitlines()}
    assert not imported & {"tensorflow", "keras", "mlflow", "pydantic"}, imported


@pytest.mark.slow
def test_a_process_that_imported_tensorflow_exits_with_its_status_its_output_and_atexit():
    """`main` ends such a process without Python's teardown: the command's status, what it
    wrote (held in a pipe's buffer) and what `atexit` runs must all be there as before."""
    code = (
        "import atexit, sys, tensorflow\n"
        "from dlx.cli import main\n"
        "atexit.register(lambda: print('atexit ran'))\n"
        "sys.argv = ['dlx', 'inspect', 'nope.yaml']\n"
        "print('before', end='')\n"
        "main()\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stdout == "beforeatexit ran\n"
    assert result.stderr.strip().endswith("error: no such spec file: nope.yaml")


def test_validate_reports_ok_per_file_and_fails_on_any_bad_one(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nmodel:\n  layers:\n    - input: {shape: [4]}\n    - dens: 3\n")
    result = runner.invoke(app, ["validate", DIGITS, str(bad)])
    assert result.exit_code == 2
    assert "digits_cnn.yaml: ok" in result.stdout
    assert "bad.yaml:5:7: error: model.layers.1.dens: unknown layer 'dens'" in result.stderr


def test_validate_with_set_override():
    result = runner.invoke(app, ["validate", DIGITS, "--set", "model.layers.7.dense.units=bad"])
    assert result.exit_code == 2
    assert result.stderr.startswith("--set:1:")


def test_inspect_json_has_the_documented_fields():
    result = runner.invoke(app, ["inspect", DIGITS, "--format", "json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["params"] == summary["trainable_params"] + summary["non_trainable_params"]
    assert summary["params"] == sum(layer["params"] for layer in summary["layers"])
    for layer in summary["layers"]:
        assert set(layer) == {"name", "class_name", "output_shape", "params"}
    assert summary["layers"][-1]["output_shape"] == [None, 10]


def test_inspect_table():
    result = runner.invoke(app, ["inspect", DIGITS])
    assert result.exit_code == 0
    assert "Conv2D" in result.stdout
    assert "Total params: 43,050" in result.stdout


def test_inspect_of_a_missing_file_is_a_usage_error_without_traceback():
    result = runner.invoke(app, ["inspect", "nope.yaml"])
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: no such spec file: nope.yaml"


def test_unknown_command_is_exit_2():
    result = runner.invoke(app, ["trian"])
    assert result.exit_code == 2


def test_a_command_run_in_process_answers_as_a_process_and_leaves_the_process_as_it_was(
    tmp_path,
):
    """`tests.in_process`: an escaped exception is a traceback and exit status 1, as from
    `python -m dlx`; the working directory, the environment, `sys.path`, the signal handlers
    and the debug flag are put back."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    before = (os.getcwd(), dict(os.environ), list(sys.path), _state["debug"])
    handlers = [signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)]
    done = dlx_in_process("--debug", "inspect", "nope.yaml", cwd=elsewhere, env={"DLX_X": "1"})
    assert done.returncode == 1
    assert done.stderr.startswith("Traceback (most recent call last):")
    assert done.stderr.rstrip().endswith("SpecError: error: no such spec file: nope.yaml")
    assert (os.getcwd(), dict(os.environ), list(sys.path), _state["debug"]) == before
    assert [signal.getsignal(n) for n in (signal.SIGINT, signal.SIGTERM)] == handlers
