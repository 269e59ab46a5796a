"""A sweep's mistakes are found before its first trial, each at its line in the spec."""

from pathlib import Path

import pytest
from typer.testing import CliRunner

from dlx import api
from dlx.cli import app
from dlx.errors import SpecError

SPEC = """\
version: 1
name: checked
data: {{source: {{sklearn: digits}}, validation_split: 0.2}}
model:
  layers:
    - input: {{shape: [8, 8, 1]}}
    - flatten
    - dense: {{units: 16, activation: relu}}
    - dense: {{units: 10, activation: softmax}}
train:
  optimizer: {{adam: {{learning_rate: 0.01}}}}
  loss: sparse_categorical_crossentropy
sweep:
  metric: val_loss
  method: {method}
  params:
    {param}
  prune: {prune}
"""
PARAM_LINE = 17


def problems(tmp_path: Path, param: str, method: str = "tpe", prune: str = "null") -> list[str]:
    path = tmp_path / "checked.yaml"
    path.write_text(SPEC.format(param=param, method=method, prune=prune))
    with pytest.raises(SpecError) as caught:
        api.validate(path)
    return [problem.render() for problem in caught.value.problems]


@pytest.mark.parametrize(
    ("param", "where", "says"),
    [
        pytest.param(
            "model.layers.7.dense.units: {choice: [8, 16]}",
            f"checked.yaml:{PARAM_LINE}:5: error: sweep.params.model.layers.7",
            "no such path in the spec: model.layers is a list of 4 (items 0 to 3), no 7",
            id="a path not in the spec",
        ),
        pytest.param(
            "train.optimizer.adam.learnin_rate: {uniform: [0.1, 0.2]}",
            f"checked.yaml:{PARAM_LINE}:5",
            "train.optimizer.adam has no key 'learnin_rate' (did you mean 'learning_rate'?)",
            id="a misspelt key on the path, with a hint",
        ),
        pytest.param(
            "train.optimizer.adam.learning_rate: {uniform: [0.5, 0.1]}",
            f"checked.yaml:{PARAM_LINE}:",
            "uniform: expected low < high. Received: [0.5, 0.1]",
            id="a range upside down",
        ),
        pytest.param(
            "model.layers.2.dense.units: {int: [0, 16]}",
            f"checked.yaml:{PARAM_LINE}:5: error: sweep.params.model.layers.2",
            "the spec is invalid at model.layers.2.dense.units = 0:",
            id="a bound at which the model does not build",
        ),
        pytest.param(
            "train.loss: {choice: [sparse_categorical_crossentropy, nope]}",
            f"checked.yaml:{PARAM_LINE}:5",
            "the spec is invalid at train.loss = 'nope'",
            id="a choice the spec refuses",
        ),
    ],
)
def test_a_param_that_cannot_be_swept_is_an_error_at_its_line(tmp_path, param, where, says):
    (message,) = problems(tmp_path, param)
    assert message.startswith(where)
    assert says in message


def test_a_grid_of_a_continuous_range_is_an_error(tmp_path):
    (message,) = problems(
        tmp_path, "train.optimizer.adam.learning_rate: {uniform: [0.1, 0.2]}", method="grid"
    )
    assert "a grid takes choice or int values; uniform is a continuous range" in message


def test_an_unknown_pruner_is_an_error_with_a_hint(tmp_path):
    (message,) = problems(
        tmp_path, "train.optimizer.adam.learning_rate: {uniform: [0.1, 0.2]}", prune="medain"
    )
    assert f"checked.yaml:{PARAM_LINE + 1}:10" in message
    assert "unknown pruner" in message and "did you mean 'median'" in message


def test_dlx_sweep_and_dlx_validate_exit_2_before_any_run(tmp_path):
    path = tmp_path / "checked.yaml"
    path.write_text(
        SPEC.format(param="model.layers.2.dense.units: {int: [0, 16]}", method="tpe", prune="null")
    )
    runner = CliRunner()
    swept = runner.invoke(app, ["sweep", str(path)])
    assert swept.exit_code == 2, swept.output
    assert "model.layers.2.dense.units = 0" in swept.output
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "optuna.db").exists()
    validated = runner.invoke(app, ["validate", str(path)])
    assert validated.exit_code == 2
    assert f"checked.yaml:{PARAM_LINE}:5" in validated.output


@pytest.mark.parametrize("name", ["digits_sweep.yaml", "pruning.yaml"])
def test_the_sweep_examples_validate_with_their_sweeps(name):
    validated = api.validate(Path(__file__).parents[2] / "examples" / "sweep" / name)
    assert validated.loaded.spec.sweep is not None


def test_a_grid_has_as_many_trials_as_points_and_an_int_step_reaches_its_last_value():
    from dlx.spec.schema import Sweep
    from dlx.sweep.space import total_trials

    sweep = Sweep.model_validate(
        {
            "metric": "val_loss",
            "method": "grid",
            "params": {"a": {"choice": [1, 2, 3]}, "b": {"int": [16, 100], "step": 16}},
        }
    )
    assert total_trials(sweep, None) == 3 * 6  # b: 16, 32, 48, 64, 80, 96
    assert sweep.params["b"].checked_values() == [16, 96]
    assert total_trials(sweep, 4) == 4


def test_a_storage_password_is_never_shown_or_recorded():
    from dlx.sweep.study import shown_storage

    assert (
        shown_storage("postgresql://me:s3cret@db:5432/sweeps")
        == "postgresql://me:***@db:5432/sweeps"
    )
    assert shown_storage("sqlite:////tmp/optuna.db") == "sqlite:////tmp/optuna.db"
