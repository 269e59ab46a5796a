"""`dlx.track.columns`: params by the shortest name that tells them apart, numbers with the
digits that tell them apart."""

from dlx.track.columns import distinct_numbers, distinct_params, short_names


def test_a_param_is_named_by_its_last_segment_and_by_more_only_where_two_share_it():
    paths = [
        "train.optimizer.adam.learning_rate",
        "model.layers.1.conv2d.filters",
        "model.layers.3.conv2d.filters",
        "model.layers.5.dropout",
        "train.batch_size",
    ]
    assert short_names(paths) == {
        "train.optimizer.adam.learning_rate": "learning_rate",
        "model.layers.1.conv2d.filters": "1.conv2d.filters",
        "model.layers.3.conv2d.filters": "3.conv2d.filters",
        "model.layers.5.dropout": "dropout",
        "train.batch_size": "batch_size",
    }


def test_a_short_name_never_takes_the_name_of_another_column_or_a_whole_path():
    assert short_names(["train.loss", "data.name"], taken=["name", "loss"]) == {
        "train.loss": "train.loss",
        "data.name": "data.name",
    }
    assert short_names(["epochs", "train.epochs"]) == {
        "epochs": "epochs",
        "train.epochs": "train.epochs",
    }


def test_numbers_get_the_digits_that_tell_them_apart_and_no_more():
    assert distinct_numbers([0.0041234, 0.0041231, None]) == ["0.0041234", "0.0041231", ""]
    assert distinct_numbers([0.97222, 0.5]) == ["0.9722", "0.5"]
    assert distinct_numbers([1e-05, 3.0]) == ["1e-05", "3"]
    assert distinct_numbers([0.1 + 0.2, 0.3]) == ["0.30000000000000004", "0.3"]


def test_params_are_numbers_where_every_value_is_one_and_text_otherwise():
    lr = ["0.004123456789", "0.004129876543", None]
    assert distinct_params(lr) == ["0.004123", "0.00413", ""]
    assert distinct_params(["16", "32"]) == ["16", "32"]  # integers as logged
    assert distinct_params(["relu", "0.50000001"]) == ["relu", "0.50000001"]
