"""Splits, their determinism, batching, and the data's fingerprint."""

import sys
import textwrap

import numpy as np
import pytest

from dlx.data import SourceContext, SourceError, check_sources, make_splits
from dlx.spec.schema import Data

SYNTHETIC = {"synthetic": {"samples": 100, "x_shape": [3], "classes": 2}}


def splits_of(context, batch_size=32, **data):
    return make_splits(Data(**data), context=context, batch_size=batch_size)


def rows(arrays) -> set[tuple[float, ...]]:
    """The examples of a split, as a set: every synthetic example is distinct."""
    return {tuple(row) for row in arrays[0]}


def test_split_sizes_are_fractions_of_all_examples_rounded_up(context):
    splits = splits_of(context, source={"sklearn": "digits"}, validation_split=0.2, test_split=0.1)
    assert (splits.num_train, splits.num_validation, splits.num_test) == (1257, 360, 180)
    assert len(splits.train_arrays[0]) == 1257
    assert len(splits.validation_arrays[1]) == 360
    assert len(splits.test_arrays[1]) == 180
    assert splits.class_names == [str(digit) for digit in range(10)]


def test_float_error_does_not_add_an_example(context):
    splits = splits_of(context, source=SYNTHETIC, test_split=0.07)
    assert splits.num_test == 7


def test_splits_are_disjoint_and_cover_the_data(context):
    splits = splits_of(context, source=SYNTHETIC, validation_split=0.3, test_split=0.2)
    train, validation, test = (
        rows(arrays)
        for arrays in (splits.train_arrays, splits.validation_arrays, splits.test_arrays)
    )
    assert not train & validation and not train & test and not validation & test
    assert len(train | validation | test) == 100


def test_same_seed_same_splits_and_fingerprint(context):
    first = splits_of(context, source=SYNTHETIC, validation_split=0.2)
    second = splits_of(context, source=SYNTHETIC, validation_split=0.2)
    np.testing.assert_array_equal(first.train_arrays[0], second.train_arrays[0])
    np.testing.assert_array_equal(first.validation_arrays[1], second.validation_arrays[1])
    assert first.fingerprint == second.fingerprint
    assert len(first.fingerprint) == 64


def test_other_seed_other_split_of_the_same_data(tmp_path):
    npz = {"npz": {"path": "data.npz"}}
    np.savez(tmp_path / "data.npz", x=np.arange(100.0)[:, None], y=np.arange(100) % 2)
    first = splits_of(SourceContext(tmp_path, seed=0), source=npz, validation_split=0.2)
    second = splits_of(SourceContext(tmp_path, seed=1), source=npz, validation_split=0.2)
    assert rows(first.validation_arrays) != rows(second.validation_arrays)
    assert first.fingerprint == second.fingerprint


def test_other_data_other_fingerprint(tmp_path):
    first = splits_of(SourceContext(tmp_path, seed=0), source=SYNTHETIC)
    second = splits_of(SourceContext(tmp_path, seed=1), source=SYNTHETIC)
    assert first.fingerprint != second.fingerprint


def test_no_validation_or_test_without_splits(context):
    splits = splits_of(context, source=SYNTHETIC)
    assert splits.validation is None and splits.validation_arrays is None
    assert splits.test is None and splits.test_arrays is None
    assert splits.num_train == 100


def test_batching(context):
    splits = splits_of(context, batch_size=32, source=SYNTHETIC, validation_split=0.2)
    sizes = [len(y) for _, y in splits.train.as_numpy_iterator()]
    assert sizes == [32, 32, 16]
    x, y = next(iter(splits.validation))
    assert x.shape == (20, 3) and y.dtype.name == "int32"


def test_train_is_reshuffled_each_epoch_validation_is_not(context):
    splits = splits_of(context, batch_size=100, source=SYNTHETIC, validation_split=0.2)
    first, second = (x.numpy() for x, _ in splits.epochs(0, 2))
    assert not np.array_equal(first, second)
    assert sorted(map(tuple, first)) == sorted(map(tuple, second))
    np.testing.assert_array_equal(next(iter(splits.train))[0], first)
    once, again = (next(iter(splits.validation))[0].numpy() for _ in range(2))
    np.testing.assert_array_equal(once, again)
    np.testing.assert_array_equal(once, splits.validation_arrays[0])


def test_an_epochs_order_depends_on_the_seed_and_the_epoch_alone(context):
    """What a resumed run relies on: epoch 3 read after a restart is epoch 3 read straight on."""
    splits = splits_of(context, batch_size=30, source=SYNTHETIC)
    straight_on = [y.numpy().tolist() for _, y in splits.epochs(0, 5)][3 * 4 :]
    resumed = [y.numpy().tolist() for _, y in splits.epochs(3, 5)]
    assert resumed == straight_on and len(resumed) == 2 * splits.steps_per_epoch
    assert [len(y) for _, y in splits.epochs(0, 2)] == [30, 30, 30, 10] * 2


def test_without_shuffle_train_keeps_the_source_order(context):
    splits = splits_of(context, batch_size=100, source=SYNTHETIC, shuffle=False)
    np.testing.assert_array_equal(next(iter(splits.train))[0], splits.train_arrays[0])


def test_data_without_targets_gives_inputs_alone(context):
    np.savez(context.base_dir / "data.npz", x=np.zeros((10, 2)))
    splits = splits_of(context, source={"npz": {"path": "data.npz", "y": None}})
    assert next(iter(splits.train)).shape == (10, 2)


def test_several_inputs(context):
    np.savez(context.base_dir / "data.npz", a=np.zeros((10, 2)), b=np.ones((10, 1)), y=np.ones(10))
    splits = splits_of(context, source={"npz": {"path": "data.npz", "x": ["a", "b"]}})
    x, _ = next(iter(splits.train))
    assert x["a"].shape == (10, 2) and x["b"].shape == (10, 1)


def write(path, text):
    path.write_text(textwrap.dedent(text).lstrip())


def test_explicit_validation_source_takes_the_training_class_ids(context):
    write(context.base_dir / "train.csv", "a,kind\n1,ant\n2,bee\n3,cat\n4,bee\n")
    write(context.base_dir / "valid.csv", "a,kind\n5,cat\n6,ant\n")
    splits = splits_of(
        context,
        source={"csv": {"path": "train.csv", "label": "kind"}},
        validation={"source": {"csv": {"path": "valid.csv", "label": "kind"}}},
    )
    assert splits.class_names == ["ant", "bee", "cat"]
    assert splits.num_validation == 2
    # CSV files stream: the labels known before training, and those read, are the training ids.
    assert list(splits.labels[1]) == [2, 0]
    assert [int(y) for batch in splits.validation for y in batch[1]] == [2, 0]
    assert splits.num_train == 4


def test_explicit_validation_source_with_an_unknown_class(context):
    write(context.base_dir / "train.csv", "a,kind\n1,ant\n2,bee\n")
    write(context.base_dir / "valid.csv", "a,kind\n5,cat\n")
    with pytest.raises(SourceError) as caught:
        splits_of(
            context,
            source={"csv": {"path": "train.csv", "label": "kind"}},
            validation={"source": {"csv": {"path": "valid.csv", "label": "kind"}}},
        )
    assert caught.value.message == (
        "the validation data has classes the training data lacks: cat. Training classes: ant, bee"
    )
    assert caught.value.path == ("data", "validation", "source")


def test_explicit_test_source_written_directly(context):
    write(context.base_dir / "train.csv", "a,kind\n1,ant\n2,bee\n3,cat\n4,bee\n")
    write(context.base_dir / "valid.csv", "a,kind\n5,cat\n")
    write(context.base_dir / "test.csv", "a,kind\n7,bee\n8,ant\n9,bee\n")
    splits = splits_of(
        context,
        source={"csv": {"path": "train.csv", "label": "kind"}},
        validation={"csv": {"path": "valid.csv", "label": "kind"}},
        test={"csv": {"path": "test.csv", "label": "kind"}},
    )
    assert (splits.num_train, splits.num_validation, splits.num_test) == (4, 1, 3)
    assert list(splits.labels[2]) == [1, 0, 1]
    assert [float(x) for batch in splits.test for x in batch[0][:, 0]] == [7.0, 8.0, 9.0]
    assert splits.file_counts == (1, 1, 1)


def test_explicit_test_source_with_an_unknown_class_is_located_where_written(context):
    write(context.base_dir / "train.csv", "a,kind\n1,ant\n2,bee\n")
    write(context.base_dir / "test.csv", "a,kind\n5,cat\n")
    with pytest.raises(SourceError) as caught:
        splits_of(
            context,
            source={"csv": {"path": "train.csv", "label": "kind"}},
            test={"csv": {"path": "test.csv", "label": "kind"}},
        )
    assert caught.value.message.startswith("the test data has classes the training data lacks")
    assert caught.value.path == ("data", "test")


def test_a_split_is_given_once():
    with pytest.raises(ValueError, match="give either test_split or test, not both"):
        Data(source={"sklearn": "iris"}, test_split=0.2, test={"sklearn": "wine"})


def test_source_errors_carry_their_spec_path(context):
    write(context.base_dir / "train.csv", "a,label\n1,0\n")
    with pytest.raises(SourceError) as caught:
        splits_of(context, source={"csv": {"path": "train.csv", "label": "lable"}})
    assert caught.value.path == ("data", "source", "csv", "label")


def test_splits_that_leave_no_training_data(context):
    tiny = {"synthetic": {"samples": 2, "x_shape": 1, "classes": 2}}
    with pytest.raises(SourceError) as caught:
        splits_of(context, source=tiny, validation_split=0.5, test_split=0.4)
    assert caught.value.message == (
        "the splits leave no training data: 2 examples, of which 1 for test (test_split=0.4) "
        "and 1 for validation (validation_split=0.5)"
    )
    assert caught.value.path == ("data",)


GENERATOR_MODULE = """
import numpy as np
import tensorflow as tf

def load(count=50):
    def examples():
        for i in range(count):
            yield np.full(2, i, dtype=np.float32), i % 3
    return tf.data.Dataset.from_generator(
        examples,
        output_signature=(tf.TensorSpec([2], tf.float32), tf.TensorSpec([], tf.int32)),
    )

def forever():
    return tf.data.Dataset.from_tensors((1.0, 0)).repeat()
"""


def test_dataset_source_of_unknown_size_is_counted_and_split_in_order(context):
    (context.base_dir / "dlx_test_generator.py").write_text(GENERATOR_MODULE)
    source = {"python": "dlx_test_generator:load"}
    splits = splits_of(context, batch_size=8, source=source, validation_split=0.2, test_split=0.1)
    assert (splits.num_train, splits.num_validation, splits.num_test) == (35, 10, 5)
    assert splits.train_arrays is None and splits.test_arrays is None
    test_x = np.concatenate([x for x, _ in splits.test.as_numpy_iterator()])
    assert list(test_x[:, 0]) == [0, 1, 2, 3, 4]
    validation_x = np.concatenate([x for x, _ in splits.validation.as_numpy_iterator()])
    assert list(validation_x[:, 0]) == list(range(5, 15))
    assert len(list(splits.train)) == 5
    train_x = np.concatenate([x for x, _ in splits.train.as_numpy_iterator()])
    assert sorted(train_x[:, 0]) == list(range(15, 50))
    again = splits_of(context, batch_size=8, source=source, validation_split=0.2, test_split=0.1)
    assert again.fingerprint == splits.fingerprint
    other = {"python": {"function": "dlx_test_generator:load", "count": 51}}
    assert splits_of(context, source=other).fingerprint != splits.fingerprint


COUNTING_MODULE = """
import numpy as np
import tensorflow as tf

yields = 0

def load():
    def examples():
        global yields
        for i in range(10):
            yields += 1
            yield np.float32(i), i % 2
    return tf.data.Dataset.from_generator(
        examples, output_signature=(tf.TensorSpec([], tf.float32), tf.TensorSpec([], tf.int32))
    )
"""


def test_dataset_source_is_read_from_the_source_once(context):
    (context.base_dir / "dlx_test_counting.py").write_text(COUNTING_MODULE)
    source = {"python": "dlx_test_counting:load"}
    splits = splits_of(context, source=source, validation_split=0.3, test_split=0.2)
    assert (splits.num_train, splits.num_validation, splits.num_test) == (5, 3, 2)
    for _epoch in range(2):
        for split in (splits.train, splits.validation, splits.test):
            assert list(split.unbatch().as_numpy_iterator())
    assert sys.modules["dlx_test_counting"].yields == 10


def test_infinite_dataset_source(context):
    (context.base_dir / "dlx_test_forever.py").write_text(GENERATOR_MODULE)
    with pytest.raises(SourceError) as caught:
        splits_of(context, source={"python": "dlx_test_forever:forever"})
    assert caught.value.message == (
        "the source's dataset is infinite: expected a finite dataset of (x, y) examples"
    )


def test_a_batch_larger_than_the_training_split_is_one_batch_an_epoch(context):
    splits = splits_of(context, batch_size=2**31 - 1, source=SYNTHETIC, validation_split=0.2)
    assert splits.steps_per_epoch == 1
    (x, y), *more = list(splits.train)
    assert not more and len(x) == len(y) == splits.num_train == 80


def test_check_sources_checks_every_source_of_the_data_without_reading_it(context):
    (context.base_dir / "empty.csv").write_text("")
    data = Data(
        source={"csv": {"path": "empty.csv", "label": "y"}},
        validation={"source": {"npz": "no.npz"}},
    )
    errors = check_sources(data, context)
    assert [(error.path, error.message) for error in errors] == [
        (
            ("data", "source", "csv", "path"),
            "empty.csv is empty: expected a header row naming the columns",
        ),
        (
            ("data", "validation", "source", "npz"),
            f"no such file: no.npz (relative to {context.base_dir})",
        ),
    ]
    assert (
        check_sources(Data(source=SYNTHETIC, validation={"source": {"sklearn": "iris"}}), context)
        == []
    )
