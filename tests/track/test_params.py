from dlx.track.params import (
    MAX_KEY_LENGTH,
    MAX_PARAM_VALUE_LENGTH,
    MAX_TAG_VALUE_LENGTH,
    flatten_params,
    safe_key,
)


def test_mappings_add_keys_and_lists_add_indexes():
    data = {
        "train": {"optimizer": {"adam": {"learning_rate": 1e-3}}, "metrics": ["accuracy"]},
        "model": {"layers": ["flatten", "relu", {"dropout": 0.25}, {"dense": {"units": 64}}]},
    }
    assert flatten_params(data) == {
        "train.optimizer.adam.learning_rate": "0.001",
        "train.metrics.0": "accuracy",
        "model.layers.0": "flatten",
        "model.layers.1": "relu",
        "model.layers.2.dropout": "0.25",
        "model.layers.3.dense.units": "64",
    }


def test_scalars_are_written_as_yaml_reads_them_and_empty_collections_are_kept():
    data = {"a": None, "b": True, "c": False, "d": 1e-5, "e": [], "f": {}, "g": 3, "h": "x y"}
    assert flatten_params(data) == {
        "a": "null",
        "b": "true",
        "c": "false",
        "d": "1e-05",
        "e": "[]",
        "f": "{}",
        "g": "3",
        "h": "x y",
    }


def test_long_values_are_kept_whole_for_the_run_to_cut():
    assert flatten_params({"description": "x" * 10_000}) == {"description": "x" * 10_000}


def test_keys_mlflow_refuses_are_made_safe_predictably():
    assert safe_key("model.layers.3.dense.units") == "model.layers.3.dense.units"
    assert safe_key("tracking.tags.owner@team/x:y") == "tracking.tags.owner_team_x_y"
    assert safe_key(".hidden") == "_.hidden"
    assert safe_key("") == "_"
    long_a, long_b = safe_key("a" * 300), safe_key("a" * 299 + "b")
    assert len(long_a) == len(long_b) == MAX_KEY_LENGTH
    assert long_a != long_b
    assert long_a.startswith("a" * 241 + "_")


def test_keys_that_become_one_stay_distinct():
    params = flatten_params({"tags": {"a@b": "1", "a_b": "2"}})
    assert params["tags.a_b"] == "1"
    assert sorted(params.values()) == ["1", "2"]
    assert len(params) == 2


def test_limits_are_mlflows():
    from mlflow.utils import validation

    assert MAX_KEY_LENGTH == validation.MAX_ENTITY_KEY_LENGTH
    assert MAX_PARAM_VALUE_LENGTH == validation.MAX_PARAM_VAL_LENGTH
    assert MAX_TAG_VALUE_LENGTH == validation.MAX_TAG_VAL_LENGTH
    for key in ("tracking.tags.owner@team/x:y", ".hidden", "", "a" * 300, "..x", "a//b"):
        assert validation.validate_param_and_metric_name(safe_key(key))
        assert not validation.path_not_unique(safe_key(key))
