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
  metric: {metric}
  method: {method}
  params:
    {param}
  prune: {prune}
"""
METRIC_LINE, PARAM_LINE = 14, 17
LEARNING_RATE = "train.optimizer.adam.learning_rate: {uniform: [0.1, 0.2]}"


def write(tmp_path: Path, param: str, method="tpe", prune="null", metric="val_loss") -> Path:
    path = tmp_path / "checked.yaml"
    path.write_text(SPEC.format(param=param, method=method, prune=prune, metric=metric))
    return path


def problems(tmp_path: Path, param: str, **section: str) -> list[str]:
    with pytest.raises(SpecError) as caught:
        api.validate(write(tmp_path, param, **section))
    return [problem.render() for problem in caught.value.problems]


@pytest.fixture
def builds(monkeypatch) -> list[object]:
    """The specs whose model `dlx.train.validation.check_spec` builds, from now on."""
    from dlx.train import validation

    check_spec, built = validation.check_spec, []

    def counted(loaded, *arguments, **options):
        built.append(loaded)
        return check_spec(loaded, *arguments, **options)

    monkeypatch.setattr(validation, "check_spec", counted)
    return built


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
        pytest.param(
            "sweep.metric: {choice: [val_loss, loss]}",
            f"checked.yaml:{PARAM_LINE}:5: error: sweep.params.sweep.metric",
            "a swept path must be outside sweep: (a trial's spec is the spec without it)",
            id="a path in the sweep section",
        ),
        pytest.param(
            "train.optimizer: {choice: [adam, sgd]}\n"
            "    train.optimizer.adam.learning_rate: {uniform: [0.1, 0.2]}",
            f"checked.yaml:{PARAM_LINE + 1}:5: error: sweep.params.train.optimizer.adam",
            "inside the swept path train.optimizer, whose values replace what it holds",
            id="a path inside another swept path",
        ),
        pytest.param(
            "model.layers.2.dense.units: {int: [4, 16], step: .inf}",
            f"checked.yaml:{PARAM_LINE}:54: error: sweep.params.model.layers.2.dense.units.step",
            "expected a finite number. Received: inf",
            id="an int step of infinity",
        ),
        pytest.param(
            "train.optimizer.adam.learning_rate: {uniform: [0.1, 0.2], step: .inf}",
            f"checked.yaml:{PARAM_LINE}:69: error: sweep.params.train.optimizer.adam",
            "expected a finite number. Received: inf",
            id="a uniform step of infinity",
        ),
        pytest.param(
            "train.optimizer.adam.learning_rate: {log_uniform: [1e-4, .inf]}",
            f"checked.yaml:{PARAM_LINE}:62: error: sweep.params.train.optimizer.adam",
            "learning_rate.log_uniform.1: expected a finite number. Received: inf",
            id="an infinite bound",
        ),
        pytest.param(
            "train.optimizer.adam.learning_rate: {uniform: [-1.0e+308, 1.0e+308]}",
            f"checked.yaml:{PARAM_LINE}:41",
            "uniform: the range is wider than a float holds (high - low overflows)",
            id="a range wider than a float",
        ),
        pytest.param(
            "train.optimizer.adam.learning_rate: {uniform: [0.0, 1.0], step: 1.0e-300}",
            f"checked.yaml:{PARAM_LINE}:41",
            "uniform: a step of 1e-300 cuts [0.0, 1.0] into more than 2**53 values",
            id="a step too small for its range",
        ),
        pytest.param(
            "model.layers.2.dense.units: {int: [1, 100000000000000000000]}",
            f"checked.yaml:{PARAM_LINE}:43: error: sweep.params.model.layers.2.dense.units.int.1",
            "expected an integer from -2**53 to 2**53 (Optuna records each value as a float)",
            id="an int bound past what a float holds exactly",
        ),
    ],
)
def test_a_param_that_cannot_be_swept_is_an_error_at_its_line(tmp_path, param, where, says):
    (message,) = problems(tmp_path, param)
    assert message.startswith(where)
    assert says in message


def test_a_grid_of_a_continuous_range_is_an_error(tmp_path):
    (message,) = problems(tmp_path, LEARNING_RATE, method="grid")
    assert "a grid takes choice or int values; uniform is a continuous range" in message


def test_an_unknown_pruner_is_an_error_with_a_hint(tmp_path):
    (message,) = problems(tmp_path, LEARNING_RATE, prune="medain")
    assert f"checked.yaml:{PARAM_LINE + 1}:10" in message
    assert "unknown pruner" in message and "did you mean 'median'" in message


@pytest.mark.parametrize(
    ("prune", "where", "says"),
    [
        (
            "{median: {warmup_epochs: -1}}",
            f"checked.yaml:{PARAM_LINE + 1}:35: error: sweep.prune.median.warmup_epochs",
            "Optuna refuses it (its n_warmup_steps): Number of warmup steps cannot be negative",
        ),
        (
            "{successive_halving: {min_epochs: 0}}",
            f"checked.yaml:{PARAM_LINE + 1}:44: error: sweep.prune.successive_halving.min_epochs",
            "Optuna refuses it (its min_resource): The value of `min_resource` is 0",
        ),
        (
            "{hyperband: {reduction_factor: 1}}",
            f"checked.yaml:{PARAM_LINE + 1}:10: error: sweep.prune",
            "Optuna cannot prune with it: float division by zero",
        ),
    ],
    ids=["refused by its constructor", "refused by another", "refused once trials are done"],
)
def test_what_optuna_refuses_of_a_pruner_is_an_error_at_its_argument(tmp_path, prune, where, says):
    (message,) = problems(tmp_path, LEARNING_RATE, prune=prune)
    assert message.startswith(where)
    assert says in message


def test_a_metric_that_runs_at_some_values_do_not_log_is_an_error_at_that_param(tmp_path):
    (message,) = problems(tmp_path, "data.validation_split: {choice: [0.0, 0.2]}")
    assert message.startswith(f"checked.yaml:{PARAM_LINE}:5: error: sweep.params.data")
    assert (
        "the runs at data.validation_split = 0.0 do not log the sweep's metric 'val_loss'. "
        "They log: loss"
    ) in message


@pytest.mark.parametrize(
    ("spec", "metric", "logged"),
    [
        ("digits_gan.yaml", "d_loss", None),
        ("digits_gan.yaml", "val_loss", "d_loss, g_loss"),
        ("digits_autoencoder.yaml", "test_loss", None),
        ("digits_autoencoder.yaml", "reconstruction_error_p95", "loss, test_loss, val_loss"),
        ("iris_mlp.yaml", "val_accuracy", None),
    ],
)
def test_each_model_kind_says_which_metrics_its_runs_log(spec, metric, logged):
    sweep = f"sweep={{metric: {metric}, params: {{train.epochs: {{int: [1, 2]}}}}}}"
    path = Path(__file__).parents[2] / "specs" / spec
    if logged is None:
        api.validate(path, [sweep], check_data=False)
        return
    with pytest.raises(SpecError) as caught:
        api.validate(path, [sweep], check_data=False)
    (problem,) = caught.value.problems
    assert problem.key == "sweep.metric"
    assert problem.message.endswith(f"Its runs log: {logged}")


def test_a_grid_too_large_is_counted_not_listed(tmp_path):
    (message,) = problems(
        tmp_path, "model.layers.2.dense.units: {int: [1, 1000000000]}", method="grid"
    )
    assert message.startswith(f"checked.yaml:{PARAM_LINE}:5: error: sweep.params.model.layers")
    assert (
        "the grid has 1,000,000,000 points, more than the 100,000 a grid may have (Optuna lists "
        "them all); this param takes 1,000,000,000 values"
    ) in message


@pytest.mark.parametrize(
    ("param", "says"),
    [
        (
            f"model.layers.2.dense.units: {{choice: {list(range(1, 3001))}}}",
            "3,000 values to check, more than the 1,000 dlx checks a sweep at",
        ),
        (
            f"model.layers.2.dense.units: {{choice: {list(range(101, 161))}}}",
            "60 models to check, more than the 50 dlx checks a sweep at (values that change "
            "only train share their model)",
        ),
    ],
    ids=["values", "models"],
)
def test_too_many_values_to_check_is_an_error_before_any_is_built(tmp_path, builds, param, says):
    (message,) = problems(tmp_path, param)
    assert message.startswith(f"checked.yaml:{PARAM_LINE}:5: error: sweep.params.model.layers.2")
    assert says in message
    assert len(builds) == 1  # the spec's own model alone


def test_values_that_change_only_train_share_one_model(tmp_path, builds):
    rates = [round(0.001 * i, 3) for i in range(1, 201)]
    api.validate(write(tmp_path, f"train.optimizer.adam.learning_rate: {{choice: {rates}}}"))
    assert len(builds) == 1  # the spec's own model is the one of its 200 values


def test_seeds_are_what_numpy_takes_and_a_sweep_sampler_wraps_them(tmp_path):
    from dlx.spec.schema import Sweep
    from dlx.sweep.space import sampler

    path = write(tmp_path, LEARNING_RATE)
    with pytest.raises(SpecError, match="seed: expected a value greater than or equal to 0"):
        api.validate(path, ["seed=-1"])
    with pytest.raises(SpecError) as caught:
        api.validate(path, ["seed=4294967295", "sweep.repeats=2"])
    (problem,) = caught.value.problems
    assert problem.key == "sweep.repeats"
    assert "take the seeds 4294967295 to 4294967296, past the largest" in problem.message
    sweep = Sweep.model_validate({"metric": "loss", "params": {"a": {"int": [1, 2]}}})
    for method in ("grid", "random", "tpe", "cmaes"):  # a worker's seed: the spec's plus more
        sampler(sweep.model_copy(update={"method": method}), 4294967295 + 12345)


def test_choices_optuna_would_confuse_are_drawn_by_index():
    from dlx.spec.schema import SweepParam
    from dlx.sweep.space import decoded, encoded_choices

    mixed = SweepParam.model_validate({"choice": [1, True, "1"]})
    assert encoded_choices(mixed) == [0, 1, 2]
    assert decoded(mixed, 1) is True
    plain = SweepParam.model_validate({"choice": [1, 2.5, "a", None]})
    assert encoded_choices(plain) == [1, 2.5, "a", None]


def test_a_trial_sets_a_mapping_key_that_reads_as_a_number(tmp_path):
    from dlx.sweep.space import trial_spec

    path = write(tmp_path, LEARNING_RATE)
    trial = trial_spec(path, ["tracking.tags={'7': a}"], {"tracking.tags.7": "b"})
    assert trial.spec.tracking.tags == {"7": "b"}


@pytest.mark.parametrize(
    ("param", "metric", "where", "says"),
    [
        (
            "model.layers.2.dense.units: {int: [0, 16]}",
            "val_loss",
            f"checked.yaml:{PARAM_LINE}:5",
            "model.layers.2.dense.units = 0",
        ),
        (
            LEARNING_RATE,
            "nope",
            f"checked.yaml:{METRIC_LINE}:11",
            "no run of this sweep logs 'nope'. Its runs log: loss, val_loss",
        ),
        (
            "sweep.metric: {choice: [val_loss, loss]}",
            "val_loss",
            f"checked.yaml:{PARAM_LINE}:5",
            "a swept path must be outside sweep:",
        ),
    ],
    ids=["a bound that does not build", "a metric no run logs", "a path in sweep:"],
)
def test_dlx_sweep_and_dlx_validate_exit_2_before_any_run(tmp_path, param, metric, where, says):
    path = write(tmp_path, param, metric=metric)
    runner = CliRunner()
    swept = runner.invoke(app, ["sweep", str(path)])
    assert swept.exit_code == 2, swept.output
    assert says in swept.output
    assert "Traceback" not in swept.output
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "optuna.db").exists()
    validated = runner.invoke(app, ["validate", str(path)])
    assert validated.exit_code == 2
    assert where in validated.output


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
