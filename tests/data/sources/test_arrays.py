"""The sources of named datasets and of .npz arrays, read for real."""

import gzip
import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from dlx.data import call_source
from tests.data.sources.helpers import source_error

# sklearn


def test_sklearn_digits_are_images_in_unit_range(context):
    data = call_source({"sklearn": "digits"}, context)
    assert data.x.shape == (1797, 8, 8, 1)
    assert data.x.dtype == np.float32
    assert data.x.min() == 0.0 and data.x.max() == 1.0
    assert data.y.dtype == np.int32 and set(data.y) == set(range(10))
    assert data.class_names == [str(digit) for digit in range(10)]


@pytest.mark.parametrize(
    ("name", "shape", "classes"),
    [
        ("iris", (150, 4), ["setosa", "versicolor", "virginica"]),
        ("wine", (178, 13), ["class_0", "class_1", "class_2"]),
        ("breast_cancer", (569, 30), ["malignant", "benign"]),
        ("load_iris", (150, 4), ["setosa", "versicolor", "virginica"]),
    ],
)
def test_sklearn_classification(context, name, shape, classes):
    data = call_source({"sklearn": name}, context)
    assert data.x.shape == shape and data.x.dtype == np.float32
    assert data.y.dtype == np.int32
    assert data.class_names == classes


def test_sklearn_regression(context):
    data = call_source({"sklearn": "diabetes"}, context)
    assert data.x.shape == (442, 10)
    assert data.y.dtype == np.float32
    assert data.class_names is None


def test_sklearn_loader_options(context):
    data = call_source({"sklearn": {"name": "digits", "n_class": 3}}, context)
    assert set(data.y) == {0, 1, 2}


def test_sklearn_unknown_option(context):
    error = source_error({"sklearn": {"name": "digits", "n_classes": 3}}, context)
    assert error.message.startswith(
        "unknown argument 'n_classes' for scikit-learn dataset 'digits' (did you mean 'n_class'?)"
    )
    assert error.path == ("sklearn", "n_classes")


def test_sklearn_options_dlx_sets_itself_are_refused(context):
    error = source_error({"sklearn": {"name": "iris", "return_X_y": True}}, context)
    assert error.message.startswith("unknown argument 'return_X_y'")


def test_sklearn_fetch_that_cannot_download(context, tmp_path, monkeypatch):
    monkeypatch.setenv("SCIKIT_LEARN_DATA", str(tmp_path / "empty"))
    component = {"sklearn": {"name": "california_housing", "download_if_missing": False}}
    error = source_error(component, context)
    assert error.message.startswith("could not load scikit-learn dataset 'california_housing'")
    assert "is there a network?" in error.message
    assert error.path == ("sklearn", "name")


# keras


def test_keras_unknown_dataset(context):
    error = source_error({"keras": "minst"}, context)
    assert error.message.startswith("unknown keras dataset 'minst' (did you mean 'mnist'")


def test_keras_unknown_option_is_caught_before_downloading(context):
    error = source_error({"keras": {"name": "mnist", "num_words": 100}}, context)
    assert error.message.startswith("unknown argument 'num_words' for keras dataset 'mnist'")


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write an array as a gzipped IDX file, the format of Keras's Fashion-MNIST cache."""
    header = bytes(16 if array.ndim == 3 else 8)
    with gzip.open(path, "wb") as file:
        file.write(header + array.astype(np.uint8).tobytes())


@pytest.mark.slow
def test_keras_reads_its_cache_and_fails_clearly_without_network(tmp_path):
    # A fresh process, so that Keras reads our KERAS_HOME (it reads it on import), and a proxy
    # that refuses every connection, so that a download fails at once, network or not.
    # Fashion-MNIST's cache is checked by no hash, so a small one written here stands for it.
    cache = tmp_path / "keras" / "datasets" / "fashion-mnist"
    cache.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for part, count in [("train", 3), ("t10k", 2)]:
        write_idx(cache / f"{part}-images-idx3-ubyte.gz", rng.integers(0, 256, (count, 28, 28)))
        write_idx(cache / f"{part}-labels-idx1-ubyte.gz", np.arange(count))
    script = textwrap.dedent(
        """
        from pathlib import Path
        from dlx.data import SourceContext, SourceError, call_source
        context = SourceContext(base_dir=Path("."))
        data = call_source({"keras": "fashion_mnist"}, context)
        print(data.x.shape, data.x.dtype, 0 <= data.x.min() <= data.x.max() <= 1)
        print(data.y.tolist(), data.y.dtype)
        try:
            call_source({"keras": "mnist"}, context)
        except SourceError as error:
            print(error.message)
        """
    )
    proxy = "http://127.0.0.1:9"
    env = {**os.environ, "KERAS_HOME": str(tmp_path / "keras")}
    env.update(https_proxy=proxy, HTTPS_PROXY=proxy, http_proxy=proxy, HTTP_PROXY=proxy)
    env.pop("no_proxy", None)
    env.pop("NO_PROXY", None)
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    lines = result.stdout.splitlines()
    assert lines[:2] == ["(5, 28, 28, 1) float32 True", "[0, 1, 2, 0, 1] int32"], result.stderr
    assert lines[-1].startswith("could not download keras dataset 'mnist' (no network?)")
    assert lines[-1].endswith("Keras keeps it in $KERAS_HOME/datasets (default: ~/.keras/datasets)")


# tfds


@pytest.mark.skipif(
    importlib.util.find_spec("tensorflow_datasets") is not None,
    reason="tensorflow-datasets is installed",
)
def test_tfds_without_the_extra(context):
    error = source_error({"tfds": {"name": "mnist", "split": "train"}}, context)
    assert "install dlx[tfds]" in error.message


def test_tfds_names_are_strings_with_or_without_the_extra(context):
    # The JSON Schema says so from the signature: dlx refuses it too, wherever it runs.
    error = source_error({"tfds": {"name": "mnist", "split": 80}}, context)
    assert error.message == "expected split to be a string. Received: split=80"
    assert error.path == ("tfds", "split")


# npz


def test_npz(context):
    np.savez(context.base_dir / "data.npz", x=np.ones((5, 3)), y=np.arange(5))
    data = call_source({"npz": {"path": "data.npz"}}, context)
    assert data.x.shape == (5, 3)
    assert list(data.y) == [0, 1, 2, 3, 4]


def test_npz_several_inputs_and_no_targets(context):
    np.savez(context.base_dir / "data.npz", image=np.zeros((4, 2, 2)), meta=np.ones((4, 1)))
    data = call_source({"npz": {"path": "data.npz", "x": ["image", "meta"], "y": None}}, context)
    assert set(data.x) == {"image", "meta"}
    assert data.y is None


def test_npz_targets_of_several_outputs_by_output_name(context):
    np.savez(context.base_dir / "data.npz", x=np.ones((4, 3)), kind=np.arange(4), size=np.ones(4))
    data = call_source(
        {"npz": {"path": "data.npz", "y": {"label": "kind", "size": "size"}}}, context
    )
    assert set(data.y) == {"label", "size"}
    assert list(data.y["label"]) == [0, 1, 2, 3]
    assert [name for name, _ in data.named_arrays()] == ["x", "y.label", "y.size"]
    error = source_error(
        {"npz": {"path": "data.npz", "y": {"label": "kind", "size": "sise"}}}, context
    )
    assert "array 'sise' not in data.npz (did you mean 'size'?)" in str(error)


def test_npz_missing_array(context):
    np.savez(context.base_dir / "data.npz", x=np.ones((5, 3)), labels=np.arange(5))
    error = source_error({"npz": {"path": "data.npz", "y": "label"}}, context)
    assert (
        error.message == "array 'label' not in data.npz (did you mean 'labels'?). Arrays: x, labels"
    )
    assert error.path == ("npz", "y")


def test_npz_arrays_of_different_lengths(context):
    np.savez(context.base_dir / "data.npz", x=np.ones((5, 3)), y=np.arange(4))
    error = source_error({"npz": {"path": "data.npz"}}, context)
    assert error.message == "the arrays hold different numbers of examples (x: 5, y: 4)"


def test_npz_that_is_not_npz(context):
    (context.base_dir / "data.npz").write_text("not a zip")
    error = source_error({"npz": {"path": "data.npz"}}, context)
    assert error.message.startswith("could not read data.npz as .npz")


# finite numbers, and files that cannot be read


def test_npz_features_must_be_finite(context):
    x = np.ones((4, 3), dtype=np.float32)
    x[2, 1] = np.nan
    np.savez(context.base_dir / "data.npz", features=x, y=np.arange(4))
    error = source_error({"npz": {"path": "data.npz", "x": "features"}}, context)
    assert error.message == (
        "array 'features' of data.npz holds nan at index [2, 1]: "
        "expected finite numbers (no NaN or infinity)"
    )
    assert error.path == ("npz", "x")


def test_npz_targets_must_be_finite(context):
    np.savez(context.base_dir / "data.npz", x=np.ones((3, 2)), y=np.array([0.0, np.nan, 1.0]))
    error = source_error({"npz": {"path": "data.npz"}}, context)
    assert error.message.startswith("array 'y' of data.npz holds nan at index [1]")
    assert error.path == ("npz",)


def test_npz_that_is_one_array(context):
    np.save(context.base_dir / "data.npy", np.ones(3))
    error = source_error({"npz": {"path": "data.npy"}}, context)
    assert error.message == (
        "could not read data.npy as .npz: it holds one array, not arrays saved with numpy.savez"
    )
