"""Windows of a time series (`data.window`): inputs, targets, chronological splits, errors."""

import numpy as np
import pytest

from dlx.data import SourceContext, SourceError, make_splits
from dlx.spec.schema import Data

NPZ = {"npz": {"path": "series.npz", "y": None}}


def splits_of(context, batch_size=4, **data):
    return make_splits(Data(**data), context=context, batch_size=batch_size)


@pytest.fixture
def series(tmp_path):
    """A 1-D series whose values are their row numbers, so windows show where they come from."""
    np.savez(tmp_path / "series.npz", x=np.arange(20, dtype=np.float32))


def test_windows_and_their_targets(context, series):
    splits = splits_of(context, source=NPZ, window={"size": 3, "horizon": 2, "stride": 2})

    x, y = splits.train_arrays
    # Window i: rows 2i, 2i+1, 2i+2; target row 2i + 3 + 2 - 1; the last target is row 18.
    np.testing.assert_array_equal(x[..., 0], [[2 * i, 2 * i + 1, 2 * i + 2] for i in range(8)])
    np.testing.assert_array_equal(y, [2 * i + 4 for i in range(8)])
    assert x.shape == (8, 3, 1) and y.shape == (8,)
    assert splits.num_train == 8
    assert splits.validation is None and splits.test is None


def test_targets_from_y_rows_of_several_features(context, tmp_path):
    rows = np.arange(12, dtype=np.float32)
    x = np.stack([rows, -rows], axis=1)
    np.savez(tmp_path / "table.npz", x=x, y=np.stack([rows * 10, rows * 100], axis=1))
    source = {"npz": {"path": "table.npz", "y": "y"}}

    splits = splits_of(context, source=source, window={"size": 4})

    inputs, targets = splits.train_arrays
    assert inputs.shape == (8, 4, 2) and targets.shape == (8, 2)
    np.testing.assert_array_equal(inputs[5], x[5:9])
    np.testing.assert_array_equal(targets[5], [90, 900])


def test_csv_label_column_is_the_target_series(context, tmp_path):
    lines = ["hour,temperature,load", *(f"{h},{h / 2},{h * 3}" for h in range(10))]
    (tmp_path / "load.csv").write_text("\n".join(lines) + "\n")
    source = {"csv": {"path": "load.csv", "label": "load"}}

    splits = splits_of(context, source=source, window={"size": 5, "horizon": 3})

    inputs, targets = splits.train_arrays
    assert inputs.shape == (3, 5, 2)
    np.testing.assert_array_equal(inputs[0, :, 0], [0, 1, 2, 3, 4])
    np.testing.assert_array_equal(targets, [21, 24, 27])  # hours 7, 8, 9


def test_synthetic_rows_keep_their_shape(context):
    source = {"synthetic": {"samples": 50, "x_shape": [3, 2], "targets": 1}}

    splits = splits_of(context, source=source, window={"size": 10, "stride": 5})

    inputs, targets = splits.train_arrays
    assert inputs.shape == (8, 10, 3, 2) and targets.shape == (8, 1)
    assert splits.train.element_spec[0].shape.as_list() == [None, 10, 3, 2]


def test_splits_are_consecutive_parts_windowed_apart(context, series):
    splits = splits_of(
        context,
        source=NPZ,
        validation_split=0.25,
        test_split=0.25,
        window={"size": 2, "horizon": 1},
        shuffle=False,
    )

    # Rows 0-9 train, 10-14 validation, 15-19 test: each part is windowed on its own.
    parts = {
        "train": (splits.train_arrays, range(0, 10)),
        "validation": (splits.validation_arrays, range(10, 15)),
        "test": (splits.test_arrays, range(15, 20)),
    }
    for name, ((x, y), rows) in parts.items():
        assert set(x.ravel()) | set(y) <= set(rows), name
        np.testing.assert_array_equal(y, list(rows)[2:], err_msg=name)
    assert (splits.num_train, splits.num_validation, splits.num_test) == (8, 3, 3)
    batches = [y.tolist() for _, y in splits.test.as_numpy_iterator()]
    assert batches == [[17, 18, 19]]


def test_training_windows_are_reshuffled_each_epoch_with_the_seed(context, series):
    def epochs(seed):
        splits = splits_of(
            SourceContext(context.base_dir, seed=seed), source=NPZ, window={"size": 2}
        )
        batches = [y for _, y in splits.epochs(0, 2)]
        half = splits.steps_per_epoch
        return [np.concatenate(part).tolist() for part in (batches[:half], batches[half:])]

    first, second = epochs(0)
    assert sorted(first) == sorted(second) == list(range(2, 20))
    assert first != second
    assert epochs(0) == [first, second]


def test_same_spec_same_windows_and_the_fingerprint_of_the_rows(context, series):
    data = {"source": NPZ, "validation_split": 0.2, "window": {"size": 3}}

    first, second = splits_of(context, **data), splits_of(context, **data)
    unwindowed = splits_of(context, source=NPZ, validation_split=0.2)

    np.testing.assert_array_equal(first.train_arrays[0], second.train_arrays[0])
    np.testing.assert_array_equal(first.validation_arrays[1], second.validation_arrays[1])
    assert first.fingerprint == second.fingerprint == unwindowed.fingerprint


def test_a_validation_source_is_windowed_whole(context, tmp_path, series):
    np.savez(tmp_path / "later.npz", x=np.arange(100, 110, dtype=np.float32))
    validation = {"source": {"npz": {"path": "later.npz", "y": None}}}

    splits = splits_of(context, source=NPZ, validation=validation, window={"size": 3})

    np.testing.assert_array_equal(splits.validation_arrays[1], np.arange(103, 110))
    assert splits.num_validation == 7


def test_a_series_too_short_for_one_window(context, series):
    with pytest.raises(SourceError) as caught:
        splits_of(context, source=NPZ, window={"size": 18, "horizon": 3})

    assert caught.value.path == ("data", "window", "size")
    assert caught.value.message == (
        "the series has 20 rows, too few for one window: a window and its target need "
        "size + horizon = 21 rows (size=18, horizon=3)"
    )


def test_a_split_too_short_for_one_window(context, series):
    with pytest.raises(SourceError) as caught:
        splits_of(context, source=NPZ, test_split=0.1, window={"size": 2})

    assert caught.value.path == ("data", "window", "size")
    assert caught.value.message.startswith(
        "the test part of the series, rows 18 to 19, has 2 rows: too few for one window"
    )


def test_a_dataset_source_cannot_be_windowed(context, tmp_path):
    (tmp_path / "series_as_dataset.py").write_text(
        "import tensorflow as tf\n\n"
        "def load():\n"
        "    return tf.data.Dataset.from_tensor_slices(([1.0, 2.0, 3.0], [0, 1, 0]))\n"
    )
    source = {"python": "series_as_dataset:load"}

    with pytest.raises(SourceError, match="windowing needs a source that gives arrays") as caught:
        splits_of(context, source=source, window={"size": 2})

    assert caught.value.path == ("data", "window")


def test_several_inputs_need_a_target_series(context, tmp_path):
    np.savez(tmp_path / "two.npz", a=np.zeros(10), b=np.ones(10))
    source = {"npz": {"path": "two.npz", "x": ["a", "b"], "y": None}}

    with pytest.raises(SourceError, match=r"several \(a, b\)") as caught:
        splits_of(context, source=source, window={"size": 2})

    assert caught.value.path == ("data", "window")
