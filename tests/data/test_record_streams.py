"""Streamed sources of many examples per file: TFRecord and CSV files, and their splits."""

import io
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from mlflow import MlflowClient
from PIL import Image

from dlx.data import SourceError, call_source, check_source, make_splits
from dlx.data.stream import MIN_FILES_TO_SPLIT_BY_FILE, FileSplit
from dlx.spec.schema import Data
from tests.in_process import dlx_in_process


def example(**features) -> bytes:
    """A serialized tf.train.Example of int64 lists, float lists and bytes values."""
    values = {}
    for name, value in features.items():
        if isinstance(value, bytes):
            values[name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))
        elif np.asarray(value).dtype.kind == "f":
            flat = np.asarray(value).ravel()
            values[name] = tf.train.Feature(float_list=tf.train.FloatList(value=flat))
        else:
            flat = np.asarray(value).ravel()
            values[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=flat))
    return tf.train.Example(features=tf.train.Features(feature=values)).SerializeToString()


def png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def write_shards(folder: Path, shards: int, per_shard: int, seed: int = 0) -> np.ndarray:
    """TFRecord shards of 4x4 RGB PNG images, raw uint8 bytes and int64 labels; all images."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    images = rng.integers(0, 256, (shards, per_shard, 4, 4, 3), dtype=np.uint8)
    for shard in range(shards):
        with tf.io.TFRecordWriter(str(folder / f"train-{shard:03d}.tfrecord")) as writer:
            for number, image in enumerate(images[shard]):
                writer.write(
                    example(
                        image=png(image),
                        pixels=image.tobytes(),
                        mean=np.float32([image.mean()]),
                        label=np.int64([(shard + number) % 3]),
                    )
                )
    return images.reshape(-1, 4, 4, 3)


FEATURES = {
    "image": {"shape": [4, 4, 3], "dtype": "uint8", "encoding": "png"},
    "label": {"dtype": "int64"},
}


def tfrecord(files="shards/*.tfrecord", features=None, label="label"):
    return {"tfrecord": {"files": files, "features": features or FEATURES, "label": label}}


def decoded(data):
    split = FileSplit(data.stream, np.arange(len(data.stream.files)))
    return split.batches(split.num_examples).get_single_element()


def test_tfrecord_labels_of_several_outputs_by_output_name(context):
    images = write_shards(context.base_dir / "shards", shards=2, per_shard=3)
    features = {**FEATURES, "mean": {"shape": [1], "dtype": "float32"}}
    data = call_source(tfrecord(features=features, label={"kind": "label", "ink": "mean"}), context)
    x, y = decoded(data)
    np.testing.assert_array_equal(x.numpy(), images)
    assert set(y) == {"kind", "ink"}
    assert list(y["kind"].numpy()) == [(s + n) % 3 for s in range(2) for n in range(3)]
    np.testing.assert_allclose(y["ink"].numpy()[:, 0], images.mean(axis=(1, 2, 3)), rtol=1e-6)


def test_tfrecord_png_and_raw_features(context):
    images = write_shards(context.base_dir / "shards", shards=3, per_shard=4)
    data = call_source(tfrecord(), context)
    assert list(data.stream.counts) == [4, 4, 4] and data.stream.labels is None
    x, y = decoded(data)
    np.testing.assert_array_equal(x.numpy(), images)
    assert x.dtype == tf.uint8 and y.dtype == tf.int64
    assert list(y.numpy()) == [(s + n) % 3 for s in range(3) for n in range(4)]

    features = {
        "pixels": {"shape": [4, 4, 3], "dtype": "uint8"},  # raw bytes, decoded by decode_raw
        "mean": {"dtype": "float32"},  # a FloatList
        "label": {"dtype": "int64"},
    }
    x, _ = decoded(call_source(tfrecord(["shards/train-000.tfrecord"], features), context))
    np.testing.assert_array_equal(x["pixels"].numpy(), images[:4])
    np.testing.assert_allclose(x["mean"].numpy(), images[:4].mean(axis=(1, 2, 3)), rtol=1e-6)


@pytest.mark.parametrize(
    ("component", "argument", "message"),
    [
        (
            tfrecord("nothing-*.tfrecord"),
            "files",
            "no file matches nothing-*.tfrecord (relative to {base})",
        ),
        (
            tfrecord(
                features={
                    "image": {"shape": [4, 4, 3], "dtype": "uint8", "encoding": "gif"},
                    "label": {"dtype": "int64"},
                }
            ),
            "features",
            "unknown encoding of feature 'image': 'gif'. Expected one of: raw, png, jpeg",
        ),
        (
            tfrecord(
                features={
                    "image": {"shape": [4, 4, 3], "dtype": "int32", "encoding": "png"},
                    "label": {"dtype": "int64"},
                }
            ),
            "features",
            "unknown dtype of feature 'image' (png encoding): 'int32'. "
            "Expected one of: uint8, uint16",
        ),
        (
            tfrecord(label="lable"),
            "label",
            "label 'lable' is not among the features (did you mean 'label'?). "
            "Features: image, label",
        ),
    ],
)
def test_tfrecord_spec_errors_are_found_without_reading(context, component, argument, message):
    write_shards(context.base_dir / "shards", shards=1, per_shard=1)
    with pytest.raises(SourceError) as caught:
        check_source(component, context)
    assert caught.value.message == message.format(base=context.base_dir)
    assert caught.value.path == ("tfrecord", argument)


def test_tfrecord_records_that_do_not_match_name_the_file(context):
    write_shards(context.base_dir / "shards", shards=2, per_shard=2)
    missing = {**FEATURES, "weight": {"dtype": "float32"}}
    with pytest.raises(SourceError) as caught:
        call_source(tfrecord(features=missing), context)
    assert caught.value.message.startswith(
        "the first record of shards/train-000.tfrecord does not match the features: "
    )
    assert "weight" in caught.value.message
    assert caught.value.path == ("tfrecord", "features")

    wrong_shape = {**FEATURES, "label": {"shape": [2], "dtype": "int64"}}
    with pytest.raises(SourceError, match="first record of shards/train-000.tfrecord"):
        call_source(tfrecord(features=wrong_shape), context)

    (context.base_dir / "shards" / "train-001.tfrecord").write_bytes(b"\x05" * 30)
    with pytest.raises(SourceError) as caught:
        call_source(tfrecord(), context)
    assert caught.value.message == (
        "shards/train-001.tfrecord is not a TFRecord file, or is truncated: record 1 ends "
        "past the end of the file"
    )


def test_a_damaged_record_found_while_reading_names_its_file(context, monkeypatch):
    monkeypatch.chdir(context.base_dir)
    write_shards(context.base_dir / "shards", shards=2, per_shard=3)
    damaged = context.base_dir / "shards" / "train-001.tfrecord"
    data = bytearray(damaged.read_bytes())
    data[-10] ^= 0xFF  # inside the last record: its length is intact, its checksum is not
    damaged.write_bytes(bytes(data))
    splits = splits_of(context, tfrecord(), cache="none")
    with pytest.raises(tf.errors.DataLossError) as raised:
        [batch for batch in splits.epochs(0, 1)]
    message = splits.unreadable(raised.value)
    assert message.startswith(f"could not read {Path('shards', 'train-001.tfrecord')}: ")
    assert message.endswith(
        "Fix or remove the file, or leave such records out with `data.on_error: skip`"
    )


def splits_of(context, source, batch_size=4, **data):
    return make_splits(Data(source=source, **data), context=context, batch_size=batch_size)


def labels_of(dataset) -> list[int]:
    return [int(y) for _, batch in dataset for y in batch]


def test_many_shards_are_split_by_file(context):
    shards = MIN_FILES_TO_SPLIT_BY_FILE + 2
    write_shards(context.base_dir / "shards", shards=shards, per_shard=3)
    splits = splits_of(context, tfrecord(), validation_split=0.25, shuffle_buffer=8)
    train_files = splits.stream.files
    assert train_files.keep is None and 0 < train_files.count < shards
    assert splits.num_train == 3 * train_files.count
    assert splits.num_train + splits.num_validation == 3 * shards
    assert splits.labels == (None, None, None)
    epoch = [(x.numpy(), y.numpy()) for x, y in splits.epochs(0, 1)]
    assert sum(len(y) for _, y in epoch) == splits.num_train
    again = [(x.numpy(), y.numpy()) for x, y in splits.epochs(0, 1)]
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(epoch, again, strict=True))


def test_a_single_file_is_split_by_example_position(context):
    images = write_shards(context.base_dir / "shards", shards=1, per_shard=20)
    splits = splits_of(context, tfrecord(), validation_split=0.2, test_split=0.1)
    assert (splits.num_train, splits.num_validation, splits.num_test) == (14, 4, 2)
    # The same permutation as for arrays: test first, then validation, each in file order.
    order = np.random.default_rng(0).permutation(20)
    test = np.concatenate([x.numpy() for x, _ in splits.test])
    validation = np.concatenate([x.numpy() for x, _ in splits.validation])
    np.testing.assert_array_equal(test, images[np.sort(order[:2])])
    np.testing.assert_array_equal(validation, images[np.sort(order[2:6])])
    train = np.concatenate([x.numpy() for x, _ in splits.epochs(0, 1)])
    assert sorted(image.tobytes() for image in train) == sorted(
        image.tobytes() for image in images[np.sort(order[6:])]
    )


def write_parts(folder: Path, parts: int, rows: int) -> list[tuple[float, float, str]]:
    folder.mkdir(parents=True, exist_ok=True)
    everything = []
    for part in range(parts):
        lines = ["a,b,kind"]
        for row in range(rows):
            values = (float(part), float(row), ("ant", "bee", "cat")[(part + row) % 3])
            everything.append(values)
            lines.append(f"{values[0]},{values[1]},{values[2]}")
        (folder / f"part-{part}.csv").write_text("\n".join(lines) + "\n\n")
    return everything


def test_csv_glob_streams_every_file(context):
    rows = write_parts(context.base_dir / "parts", parts=3, rows=5)
    data = call_source({"csv": {"path": "parts/part-*.csv", "label": "kind"}}, context)
    assert list(data.stream.counts) == [5, 5, 5] and data.class_names == ["ant", "bee", "cat"]
    assert data.description == "parts/part-*.csv: 15 rows in 3 files, 2 features, label 'kind'"
    x, y = decoded(data)
    np.testing.assert_array_equal(x.numpy(), [row[:2] for row in rows])
    expected = [["ant", "bee", "cat"].index(row[2]) for row in rows]
    assert list(y.numpy()) == expected == list(data.stream.labels)
    listed = call_source(
        {"csv": {"path": ["parts/part-2.csv", "parts/part-0.csv"], "label": "kind"}}, context
    )
    assert [file.name for file in listed.stream.files] == ["part-2.csv", "part-0.csv"]


def test_csv_errors_name_the_file_line_and_column(context):
    write_parts(context.base_dir / "parts", parts=2, rows=3)
    path = context.base_dir / "parts" / "part-1.csv"
    path.write_text(path.read_text().replace("1.0,2.0", "1.0,nan"))
    with pytest.raises(SourceError) as caught:
        call_source({"csv": {"path": "parts/*.csv", "label": "kind"}}, context)
    assert caught.value.message == (
        "column 'b' of parts/part-1.csv holds 'nan' on line 4: expected finite numbers "
        "(no NaN or infinity)"
    )
    path.write_text("a,c,kind\n1,2,ant\n")
    with pytest.raises(SourceError) as caught:
        check_source({"csv": {"path": "parts/*.csv", "label": "kind"}}, context)
    assert caught.value.message == (
        "the header of parts/part-1.csv (a, c, kind) differs from the header of "
        "parts/part-0.csv (a, b, kind)"
    )


def test_a_single_csv_keeps_the_splits_of_arrays(context):
    lines = ["x,y", *(f"{i},{i % 2}" for i in range(30))]
    (context.base_dir / "data.csv").write_text("\n".join(lines) + "\n")
    source = {"csv": {"path": "data.csv", "label": "y"}}
    splits = splits_of(context, source, validation_split=0.2, test_split=0.2)
    again = splits_of(context, source, validation_split=0.2, test_split=0.2)
    order = np.random.default_rng(0).permutation(30)
    test = np.concatenate([x.numpy()[:, 0] for x, _ in splits.test])
    np.testing.assert_array_equal(test, np.sort(order[:6]))
    validation = np.concatenate([x.numpy()[:, 0] for x, _ in again.validation])
    np.testing.assert_array_equal(validation, np.sort(order[6:12]))
    assert list(splits.labels[2]) == [int(i) % 2 for i in np.sort(order[:6])]
    assert labels_of(splits.test) == list(splits.labels[2])
    assert splits.num_train == 18
    for split in (0, 1, 2):  # the same seed, the same splits
        assert np.array_equal(splits.labels[split], again.labels[split])


def test_text_streams_its_files(context):
    for class_name, texts in {"pos": ["good", "great"], "neg": ["bad", "awful"]}.items():
        (context.base_dir / "reviews" / class_name).mkdir(parents=True)
        for number, text in enumerate(texts):
            (context.base_dir / "reviews" / class_name / f"{number}.txt").write_text(text)
    splits = splits_of(context, {"text": "reviews"}, batch_size=2, shuffle=False)
    x, y = next(iter(splits.train))
    assert x.dtype == tf.string and list(x.numpy()) == [b"bad", b"awful"]
    (context.base_dir / "reviews" / "neg" / "2.txt").write_bytes(b"\xff\xfe bad")
    with pytest.raises(SourceError, match=r"reviews/neg/2.txt is not UTF-8 text"):
        call_source({"text": "reviews"}, context)


@pytest.mark.slow
def test_dlx_trains_on_tfrecord_shards_into_a_finished_run(tmp_path):
    write_shards(tmp_path / "shards", shards=4, per_shard=16)
    (tmp_path / "shards.yaml").write_text(
        "version: 1\nname: shards\nseed: 3\ndata:\n  source:\n    tfrecord:\n"
        "      files: shards/train-*.tfrecord\n      features:\n"
        "        image: {shape: [4, 4, 3], dtype: uint8, encoding: png}\n"
        "        label: {dtype: int64}\n      label: label\n"
        "  validation_split: 0.2\n  test_split: 0.1\n  shuffle_buffer: 16\n"
        "model:\n  layers:\n    - input: {shape: [4, 4, 3]}\n    - normalization\n"
        "    - flatten\n    - dense: {units: 3, activation: softmax}\n"
        "train:\n  epochs: 2\n  batch_size: 8\n  loss: sparse_categorical_crossentropy\n"
        "  metrics: [accuracy]\n"
    )
    finished = dlx_in_process("train", "shards.yaml", cwd=tmp_path)
    assert finished.returncode == 0, finished.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert run.info.status == "FINISHED"
    assert {"loss", "val_loss", "test_accuracy"} <= set(run.data.metrics)
