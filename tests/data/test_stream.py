"""Streamed sources: splits by file, each epoch's order from (seed, epoch), the cache."""

import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dlx.data import SourceContext, SourceError, make_splits
from dlx.data.cache import AUTO_CACHE_BYTES, cached, choose_cache
from dlx.data.stream import describe_unreadable
from dlx.errors import SpecError, relative_path
from dlx.spec import load_spec_text
from dlx.spec.schema import Data
from tests.train.processes import wait_for


def write_folder(root: Path, per_class: int = 20, size: tuple[int, int] = (8, 8)) -> None:
    """Three class folders of small random PNG images, `size` (width, height) each."""
    rng = np.random.default_rng(1)
    for class_name in ("bird", "cat", "dog"):
        (root / class_name).mkdir(parents=True)
        for number in range(per_class):
            pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / class_name / f"{number}.png")


def splits_of(context, batch_size=8, **data):
    data = {"source": {"images": {"directory": "pets", "image_size": [8, 8]}}, **data}
    return make_splits(Data(**data), context=context, batch_size=batch_size)


def batches(dataset) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(x.numpy(), y.numpy()) for x, y in dataset]


def concatenated(dataset) -> tuple[np.ndarray, np.ndarray]:
    parts = batches(dataset)
    return np.concatenate([x for x, _ in parts]), np.concatenate([y for _, y in parts])


@pytest.fixture
def pets(context):
    write_folder(context.base_dir / "pets")
    return context


def test_files_are_split_by_a_seeded_hash_of_their_paths(pets):
    splits = splits_of(pets, validation_split=0.2, test_split=0.2)
    again = splits_of(pets, validation_split=0.2, test_split=0.2)
    other = splits_of(SourceContext(pets.base_dir, seed=1), validation_split=0.2, test_split=0.2)
    counts = (splits.num_train, splits.num_validation, splits.num_test)
    assert sum(counts) == 60 and all(counts)
    assert counts == (again.num_train, again.num_validation, again.num_test)
    for split in (0, 1, 2):
        assert np.array_equal(splits.labels[split], again.labels[split])
    assert splits.fingerprint == again.fingerprint == other.fingerprint
    # Another seed, another split of the same files.
    assert not np.array_equal(concatenated(splits.test)[0], concatenated(other.test)[0])
    # The splits are disjoint, cover the data, and keep the class ids of the whole folder.
    train = concatenated(splits.epochs(0, 1))
    validation, test = concatenated(splits.validation), concatenated(splits.test)
    images = np.concatenate([train[0], validation[0], test[0]]).reshape(60, -1)
    assert len({row.tobytes() for row in images}) == 60
    assert splits.class_names == ["bird", "cat", "dog"]
    assert np.array_equal(np.sort(test[1]), np.sort(splits.labels[2]))
    assert np.array_equal(validation[1], splits.labels[1])


def test_each_epochs_order_is_drawn_from_the_seed_and_the_epoch_alone(pets):
    splits = splits_of(pets, shuffle_buffer=16, cache="none")
    whole = batches(splits.epochs(0, 3))
    resumed = batches(splits.epochs(1, 3))
    assert len(whole) == 3 * splits.steps_per_epoch
    steps = splits.steps_per_epoch
    for ours, theirs in zip(whole[steps:], resumed, strict=True):
        assert np.array_equal(ours[0], theirs[0]) and np.array_equal(ours[1], theirs[1])
    first = np.concatenate([y for _, y in whole[:steps]])
    second = np.concatenate([y for _, y in whole[steps : 2 * steps]])
    assert not np.array_equal(first, second)
    assert np.array_equal(np.sort(first), np.sort(second))


def test_memory_cache_reads_what_the_files_give(pets):
    streamed = splits_of(pets, validation_split=0.2, cache="none")
    in_memory = splits_of(pets, validation_split=0.2, cache="memory")
    assert (streamed.cache, in_memory.cache) == ("none", "memory")
    for ours, theirs in zip(
        batches(streamed.epochs(0, 2)), batches(in_memory.epochs(0, 2)), strict=True
    ):
        assert np.array_equal(ours[0], theirs[0]) and np.array_equal(ours[1], theirs[1])
    assert np.array_equal(
        concatenated(streamed.validation)[0], concatenated(in_memory.validation)[0]
    )


def test_disk_cache_is_filled_once_and_named_by_the_fingerprint(pets):
    splits = splits_of(pets, validation_split=0.2, cache={"disk": "cache/pets"})
    assert splits.cache == str(pets.base_dir / "cache" / f"pets-{splits.fingerprint[:16]}")
    assert list((pets.base_dir / "cache").glob("pets-*-train*.index"))
    first, again = concatenated(splits.epochs(1, 2)), concatenated(splits.epochs(1, 2))
    assert np.array_equal(first[0], again[0])
    assert sorted(first[1].tolist()) == sorted(splits.labels[0].tolist())


def test_auto_cache_keeps_small_sources_in_memory(pets):
    assert splits_of(pets).cache == "memory"
    stream = splits_of(pets).stream.files.stream
    stream.example_bytes = AUTO_CACHE_BYTES
    assert choose_cache("auto", [stream], pets.base_dir, "0" * 64) == "none"


@pytest.mark.parametrize("size", [(13, 11), (5, 6)])
def test_resized_images_are_within_one_level_of_pillows_bilinear(context, size):
    import keras

    write_folder(context.base_dir / "pets", per_class=3, size=size)
    x, y = concatenated(splits_of(context, shuffle=False, cache="none").epochs(0, 1))
    files = sorted((context.base_dir / "pets").rglob("*.png"))
    pillow = np.stack(
        [
            keras.utils.img_to_array(
                keras.utils.load_img(file, target_size=(8, 8), interpolation="bilinear")
            )
            for file in files
        ]
    )
    assert x.dtype == np.float32 and np.array_equal(x, np.round(x))
    assert np.abs(x - pillow).max() <= 1.0
    assert y.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]


def test_streamed_images_equal_the_files_pixels_when_not_resized(context):
    write_folder(context.base_dir / "pets", per_class=2)
    x, y = concatenated(splits_of(context, shuffle=False).epochs(0, 1))
    files = sorted((context.base_dir / "pets").rglob("*.png"))
    expected = np.stack([np.asarray(Image.open(file), dtype=np.float32) for file in files])
    np.testing.assert_array_equal(x, expected)
    assert y.tolist() == [0, 0, 1, 1, 2, 2]


def test_fingerprint_follows_the_files_not_their_reading(pets):
    before = splits_of(pets).fingerprint
    image = pets.base_dir / "pets" / "cat" / "0.png"
    Image.fromarray(np.zeros((9, 9, 3), np.uint8)).save(image)
    assert splits_of(pets).fingerprint != before


def test_too_few_files_for_a_split(context):
    write_folder(context.base_dir / "pets", per_class=1)
    with pytest.raises(SourceError, match="the test split of the 3 files is empty"):
        splits_of(context, test_split=0.01)


def test_windows_need_arrays(pets):
    with pytest.raises(SourceError, match="streams files"):
        splits_of(pets, window={"size": 2})


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("shuffle_buffer: 0", "data.shuffle_buffer"),
        ("cache: ram", "data.cache"),
        ("cache: {disk: 3, other: 1}", "data.cache"),
    ],
)
def test_bad_cache_or_buffer_is_located(tmp_path, line, expected):
    text = (
        "version: 1\nname: t\ndata:\n  source: {sklearn: iris}\n"
        f"  {line}\nmodel:\n  layers: [{{dense: 3}}]\n"
        "train:\n  loss: sparse_categorical_crossentropy\n"
    )
    with pytest.raises(SpecError) as caught:
        load_spec_text(text, tmp_path / "t.yaml")
    assert expected in str(caught.value) and "t.yaml:5:" in str(caught.value)


def test_explicit_validation_folder_takes_the_training_class_ids(context):
    write_folder(context.base_dir / "pets")
    (context.base_dir / "held_out" / "dog").mkdir(parents=True)
    image = np.full((8, 8, 3), 9, np.uint8)
    Image.fromarray(image).save(context.base_dir / "held_out" / "dog" / "0.png")
    splits = splits_of(
        context, validation={"source": {"images": {"directory": "held_out", "image_size": [8, 8]}}}
    )
    x, y = concatenated(splits.validation)
    assert y.tolist() == [2] and splits.labels[1].tolist() == [2]
    assert np.array_equal(x[0], np.full((8, 8, 3), 9.0, np.float32))
    assert splits.num_train == 60


@pytest.mark.parametrize("global_seed", [0, 42])
def test_epochs_read_under_the_global_seed_the_runner_sets(pets, global_seed):
    # The runner seeds TensorFlow with the spec's seed, 0 by default: `shuffle` then compared a
    # symbolic seed with 0 in Python and failed to trace.
    import keras

    keras.utils.set_random_seed(global_seed)
    splits = splits_of(pets, shuffle_buffer=16, cache="none")
    assert np.array_equal(
        concatenated(splits.epochs(0, 2))[1], concatenated(splits.epochs(0, 2))[1]
    )


def break_file(root: Path, relative: str = "dog/5.png") -> Path:
    """Make one file unreadable; `dog/5.png` is the 46th file, past the probed first ones."""
    path = root / relative
    path.write_bytes(b"not an image")
    return path


def test_a_broken_file_found_while_reading_is_named(pets, monkeypatch):
    monkeypatch.chdir(pets.base_dir)
    break_file(pets.base_dir / "pets")
    splits = splits_of(pets, cache="none")
    with pytest.raises(Exception) as raised:
        batches(splits.epochs(0, 1))
    message = splits.unreadable(raised.value)
    assert message.startswith(
        f"could not read {Path('pets', 'dog', '5.png')}: Unknown image file format. One of "
    )
    assert message.endswith(
        "required. Fix or remove the file, or leave such files out with `data.on_error: skip`"
    )
    assert splits.unreadable(ValueError("another error")) is None


@pytest.mark.parametrize("cache", ["memory", "disk"])
def test_a_broken_file_found_filling_a_cache_is_a_source_error(pets, monkeypatch, cache):
    monkeypatch.chdir(pets.base_dir)
    break_file(pets.base_dir / "pets")
    with pytest.raises(SourceError) as raised:
        splits_of(pets, cache={"disk": "cache/pets"} if cache == "disk" else cache)
    assert raised.value.message.startswith(
        f"could not read {Path('pets', 'dog', '5.png')}: Unknown image file format"
    )
    assert raised.value.message.endswith("or leave such files out with `data.on_error: skip`")
    assert raised.value.path == ("data",)


@pytest.mark.parametrize("cache", ["none", "memory", "disk"])
def test_skip_leaves_broken_files_out_and_keeps_the_epochs_length(pets, cache):
    broken = [break_file(pets.base_dir / "pets", name) for name in ("dog/5.png", "dog/19.png")]
    chosen = {"disk": "cache/pets"} if cache == "disk" else cache
    splits = splits_of(pets, cache=chosen, on_error="skip", validation_split=0.2)
    whole = batches(splits.epochs(0, 2))
    assert len(whole) == 2 * splits.steps_per_epoch
    assert sum(len(y) for _, y in whole) == 2 * splits.num_train
    concatenated(splits.validation)
    assert splits.skipped() == sorted(str(path) for path in broken)
    # A resumed run reads the same second epoch.
    resumed = batches(splits.epochs(1, 2))
    for ours, theirs in zip(whole[splits.steps_per_epoch :], resumed, strict=True):
        assert np.array_equal(ours[0], theirs[0])


def test_skip_probes_past_broken_first_files_but_not_a_folder_of_them(pets):
    root = pets.base_dir / "pets"
    break_file(root, "bird/0.png")
    splits = splits_of(pets, on_error="skip", cache="none")
    assert splits.num_train == 60
    for name in ("bird", "cat"):  # the first 32 files and more
        for number in range(20):
            break_file(root, f"{name}/{number}.png")
    with pytest.raises(SourceError, match="none of the first 32 images could be read"):
        splits_of(pets, on_error="skip")


def test_content_fingerprint_reads_the_bytes(pets):
    by_files = splits_of(pets, cache="none").fingerprint
    by_content = splits_of(pets, cache="none", fingerprint="content").fingerprint
    assert by_files != by_content
    image = pets.base_dir / "pets" / "cat" / "3.png"
    image.write_bytes(image.read_bytes())  # the same bytes, a new modification time
    assert splits_of(pets, cache="none").fingerprint != by_files
    assert splits_of(pets, cache="none", fingerprint="content").fingerprint == by_content
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(image)
    assert splits_of(pets, cache="none", fingerprint="content").fingerprint != by_content


FILL = """
import sys, time
import tensorflow as tf
from dlx.data.cache import cached

def slowly(value):
    time.sleep(float(sys.argv[2]))
    return value

examples = tf.data.Dataset.range(40).map(
    lambda v: tf.py_function(slowly, [v], tf.int64), num_parallel_calls=1
)
print(sum(int(v) for v in cached(examples, sys.argv[1], "train")), flush=True)
"""


def fill(prefix: Path, delay: float) -> subprocess.Popen:
    """Start a process that fills the disk cache `prefix` with 0..39, one per `delay` seconds."""
    return subprocess.Popen(
        [sys.executable, "-c", FILL, str(prefix), str(delay)],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_disk_cache_fill_killed_midway_is_harmless(tmp_path):
    prefix = tmp_path / "cache" / "examples"
    prefix.parent.mkdir()
    killed = fill(prefix, 0.5)
    wait_for(lambda: list(prefix.parent.glob("*.lockfile")), "the fill to start", 120, job=killed)
    killed.send_signal(signal.SIGKILL)
    killed.wait(timeout=30)
    assert not Path(f"{prefix}-train.index").exists()

    import tensorflow as tf

    examples = cached(tf.data.Dataset.range(40), str(prefix), "train")
    assert [int(v) for v in examples] == list(range(40))
    assert sorted(path.name for path in prefix.parent.iterdir()) == [
        "examples-train.data-00000-of-00001",
        "examples-train.index",
    ]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_two_processes_fill_one_disk_cache_at_once(tmp_path):
    prefix = tmp_path / "examples"
    jobs = [fill(prefix, 0.05) for _ in range(2)]
    for job in jobs:
        output, _ = job.communicate(timeout=240)
        assert job.returncode == 0 and output.strip() == str(sum(range(40)))

    import tensorflow as tf

    # A cache in place is read, not filled again: the dataset given is not read at all.
    examples = cached(tf.data.Dataset.range(0), str(prefix), "train")
    assert [int(v) for v in examples] == list(range(40))
    assert not list(tmp_path.glob("*.fill-*"))


@pytest.mark.parametrize("cache", ["memory", "none"])
def test_images_wait_in_the_cache_and_buffer_as_uint8_and_leave_as_float32(pets, cache):
    import tensorflow as tf

    splits = splits_of(pets, validation_split=0.2, cache=cache)
    files = splits.stream.files

    assert files.examples().element_spec[0].dtype == tf.uint8
    assert files.stream.example_bytes == 8 * 8 * 3
    for dataset in (splits.epochs(0, 1), splits.validation):
        x, _ = concatenated(dataset)
        assert x.dtype == np.float32 and x.max() > 1.0


@pytest.mark.parametrize(
    "broken",
    [
        [0],  # the first file of the first batch
        [3],  # inside a batch
        [4, 5, 6, 7],  # a whole batch
        [7, 8],  # across two batches
        [11],  # the last file
    ],
)
def test_gaps_are_found_wherever_they_fall_among_the_batches(context, broken):
    from dlx.data import call_source
    from dlx.data.stream import FileSplit

    write_folder(context.base_dir / "pets", per_class=4)  # 12 files, batches of 4
    source = call_source({"images": {"directory": "pets", "image_size": [8, 8]}}, context)
    files = source.stream.files
    for position in broken:
        files[position].write_bytes(b"not an image")
    everything = np.arange(len(files))

    failing = FileSplit(source.stream, everything)
    with pytest.raises(Exception) as raised:
        batches(failing.batches(4))
    assert describe_unreadable(raised.value, [source.stream]).startswith(
        f"could not read {relative_path(files[broken[0]])}:"
    )

    skipping = FileSplit(source.stream, everything, on_error="skip")
    sizes = [len(y) for _, y in batches(skipping.batches(4))]
    assert sum(sizes) == 12 - len(broken) and all(size == 4 for size in sizes[:-1])
    assert skipping.skipped() == [str(files[position]) for position in broken]
