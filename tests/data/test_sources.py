"""Every data source, read from real files the tests write, and the messages of call_source."""

import gzip
import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dlx.data import SOURCES, SourceContext, SourceError, call_source, check_source
from dlx.data.sources import SourceData
from dlx.data.stream import FileSplit


def write_csv(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def source_error(component, context: SourceContext) -> SourceError:
    with pytest.raises(SourceError) as caught:
        call_source(component, context)
    return caught.value


def test_every_source_of_the_spec_is_registered():
    expected = {"sklearn", "keras", "tfds", "npz", "csv", "images", "text", "tfrecord"}
    expected |= {"synthetic", "python"}
    assert set(SOURCES) == expected


# call_source: names and arguments


def test_unknown_source_names_the_closest(context):
    error = source_error({"skleran": "digits"}, context)
    assert error.message == (
        "unknown data source 'skleran' (did you mean 'sklearn' or 'keras'?). "
        "Expected one of: sklearn, keras, tfds, npz, csv, images, text, tfrecord, synthetic, python"
    )
    assert error.path == ()


def test_source_names_ignore_case_and_underscores(context):
    assert call_source({"SK_Learn": "iris"}, context).x.shape == (150, 4)


def test_unknown_argument_names_the_closest(context):
    write_csv(context.base_dir / "data.csv", "a,label\n1,0\n")
    error = source_error({"csv": {"path": "data.csv", "lable": "label"}}, context)
    assert error.message == (
        "unknown argument 'lable' for csv (did you mean 'label'?). Expected: path, label, features"
    )
    assert error.argument == "lable"
    assert error.path == ("csv", "lable")


def test_missing_argument(context):
    error = source_error({"csv": {"path": "data.csv"}}, context)
    assert error.message == "missing argument 'label' for csv"
    assert error.path == ("csv",)


def test_a_scalar_is_the_first_argument(context):
    error = source_error({"csv": "data.csv"}, context)
    assert error.message == "missing argument 'label' for csv"


def test_missing_file_is_relative_to_the_spec(context):
    error = source_error({"csv": {"path": "data/train.csv", "label": "y"}}, context)
    assert error.message == f"no such file: data/train.csv (relative to {context.base_dir})"
    assert error.argument == "path"
    assert error.path == ("csv", "path")
    assert error.render() == f"error: csv.path: {error.message}"


def test_error_in_a_positional_argument_points_at_the_component(context):
    error = source_error({"sklearn": "digit"}, context)
    assert error.message.startswith("unknown scikit-learn dataset 'digit' (did you mean 'digits'")
    assert error.path == ("sklearn",)


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


# csv


def test_csv_numeric_label_and_default_features(context):
    write_csv(context.base_dir / "data.csv", "a,label,b\n1,0,2.5\n3,1,4\n5,2,6\n")
    data = call_source({"csv": {"path": "data.csv", "label": "label"}}, context)
    x, y = decoded(data)
    np.testing.assert_array_equal(x, [[1, 2.5], [3, 4], [5, 6]])
    assert x.dtype == np.float32
    assert list(y) == [0, 1, 2] and np.issubdtype(y.dtype, np.integer)
    assert list(data.stream.labels) == [0, 1, 2]
    assert data.class_names is None


def test_csv_text_labels_become_class_ids(context):
    write_csv(context.base_dir / "data.csv", "a,b,kind\n1,2,dog\n3,4,cat\n5,6,dog\n")
    data = call_source({"csv": {"path": "data.csv", "label": "kind", "features": ["b"]}}, context)
    assert data.class_names == ["cat", "dog"]
    x, y = decoded(data)
    assert list(y) == [1, 0, 1] and y.dtype == np.int32
    assert list(data.stream.labels) == [1, 0, 1]
    np.testing.assert_array_equal(x, [[2], [4], [6]])


def test_csv_float_label_is_a_regression_target(context):
    write_csv(context.base_dir / "data.csv", "a,price\n1,2.5\n2,3.0\n")
    data = call_source({"csv": {"path": "data.csv", "label": "price"}}, context)
    assert decoded(data)[1].dtype == np.float32


def test_csv_missing_column(context):
    write_csv(context.base_dir / "data.csv", "a,b,label\n1,2,0\n")
    error = source_error({"csv": {"path": "data.csv", "label": "lable"}}, context)
    assert error.message == (
        "column 'lable' not in data.csv (did you mean 'label'?). Columns: a, b, label"
    )
    assert error.path == ("csv", "label")


def test_csv_missing_feature_column(context):
    write_csv(context.base_dir / "data.csv", "a,b,label\n1,2,0\n")
    error = source_error(
        {"csv": {"path": "data.csv", "label": "label", "features": ["c"]}}, context
    )
    assert error.message == "column 'c' not in data.csv. Columns: a, b, label"
    assert error.argument == "features"


def test_csv_text_feature(context):
    write_csv(context.base_dir / "data.csv", "a,color,label\n1,2,0\n3,red,1\n")
    error = source_error({"csv": {"path": "data.csv", "label": "label"}}, context)
    assert error.message == (
        "column 'color' of data.csv is not numeric: features must be numbers. "
        "Received: 'red' on line 3"
    )


def test_csv_missing_value(context):
    write_csv(context.base_dir / "data.csv", "a,label\n1,0\n,1\n")
    error = source_error({"csv": {"path": "data.csv", "label": "label"}}, context)
    assert error.message == "missing value in column 'a' of data.csv, line 3"


def test_csv_row_of_the_wrong_length(context):
    write_csv(context.base_dir / "data.csv", "a,label\n1,0\n2,1,7\n")
    error = source_error({"csv": {"path": "data.csv", "label": "label"}}, context)
    assert error.message == "line 3 of data.csv has 3 values; the header names 2 columns"


# images and text


def write_images(root: Path, sizes: dict[str, list[tuple[int, int]]]) -> None:
    rng = np.random.default_rng(0)
    for class_name, class_sizes in sizes.items():
        (root / class_name).mkdir(parents=True)
        for number, (width, height) in enumerate(class_sizes):
            pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / class_name / f"{number}.png")


def decoded(data: SourceData) -> tuple[np.ndarray, np.ndarray]:
    """Every example of a streamed source, as the model takes it, in the source's order."""
    split = FileSplit(data.stream, np.arange(len(data.stream.files)))
    x, y = split.finished(split.files_dataset()).batch(split.num_examples).get_single_element()
    return x.numpy(), y.numpy()


def test_images(context):
    write_images(context.base_dir / "pets", {"dog": [(10, 12), (7, 7)], "cat": [(5, 9)]})
    (context.base_dir / "pets" / "cat" / "notes.txt").write_text("not an image")
    component = {"images": {"directory": "pets", "image_size": [6, 4]}}
    data = call_source(component, context)
    x, y = decoded(data)
    assert x.shape == (3, 6, 4, 3) and x.dtype == np.float32
    assert x.max() > 1.0 and x.max() <= 255.0
    assert data.class_names == ["cat", "dog"]
    assert list(y) == [0, 1, 1]


def test_images_in_grayscale(context):
    write_images(context.base_dir / "pets", {"dog": [(4, 4)], "cat": [(4, 4)]})
    component = {"images": {"directory": "pets", "image_size": [4, 4], "color_mode": "grayscale"}}
    assert decoded(call_source(component, context))[0].shape == (2, 4, 4, 1)


def test_images_bad_color_mode(context):
    error = source_error({"images": {"directory": "pets", "color_mode": "RGB"}}, context)
    assert error.message == (
        "expected color_mode to be one of rgb, grayscale, rgba. Received: color_mode='RGB'"
    )
    assert error.path == ("images", "color_mode")


def test_images_without_class_folders(context):
    (context.base_dir / "pets").mkdir()
    error = source_error({"images": "pets"}, context)
    assert error.message == "no class sub-folders in pets: expected one sub-folder per class"


def test_text(context):
    for class_name, texts in {"pos": ["good", "great"], "neg": ["bad"]}.items():
        (context.base_dir / "reviews" / class_name).mkdir(parents=True)
        for number, text in enumerate(texts):
            (context.base_dir / "reviews" / class_name / f"{number}.txt").write_text(text)
    data = call_source({"text": "reviews"}, context)
    x, y = decoded(data)
    assert list(x) == [b"bad", b"good", b"great"]
    assert list(y) == [0, 1, 1]
    assert data.class_names == ["neg", "pos"]


def test_text_missing_directory(context):
    error = source_error({"text": {"directory": "reviews"}}, context)
    assert error.message == f"no such directory: reviews (relative to {context.base_dir})"
    assert error.path == ("text", "directory")


# synthetic


def test_synthetic_classes_are_seeded_and_learnable(context):
    from sklearn.linear_model import LogisticRegression

    component = {"synthetic": {"samples": 600, "x_shape": [4, 5], "classes": 3}}
    data = call_source(component, context)
    assert data.x.shape == (600, 4, 5) and data.x.dtype == np.float32
    assert data.y.dtype == np.int32 and set(data.y) == {0, 1, 2}
    again = call_source(component, context)
    np.testing.assert_array_equal(data.x, again.x)
    other = call_source(component, SourceContext(base_dir=context.base_dir, seed=1))
    assert not np.array_equal(data.x, other.x)
    flat = data.x.reshape(600, -1)
    model = LogisticRegression(max_iter=1000).fit(flat[:500], data.y[:500])
    assert model.score(flat[500:], data.y[500:]) > 0.8


def test_synthetic_regression(context):
    data = call_source({"synthetic": {"samples": 10, "x_shape": 3, "targets": 2}}, context)
    assert data.x.shape == (10, 3)
    assert data.y.shape == (10, 2) and data.y.dtype == np.float32


def test_synthetic_needs_classes_or_targets(context):
    error = source_error({"synthetic": {"samples": 10, "x_shape": 3}}, context)
    assert error.message == (
        "expected exactly one of classes (classification) or targets (regression). "
        "Received: classes=None, targets=None"
    )


def test_synthetic_bad_shape(context):
    error = source_error({"synthetic": {"samples": 10, "x_shape": [3, 0], "classes": 2}}, context)
    assert error.message == (
        "expected x_shape to be a positive integer or a list of them. Received: x_shape=[3, 0]"
    )
    assert error.path == ("synthetic", "x_shape")


# python


def write_module(directory: Path, name: str, code: str) -> None:
    (directory / f"{name}.py").write_text(textwrap.dedent(code))


def test_python_arrays(context):
    write_module(
        context.base_dir,
        "dlx_test_arrays",
        """
        import numpy as np

        def load(rows=4):
            return np.ones((rows, 2)), np.arange(rows)
        """,
    )
    data = call_source({"python": "dlx_test_arrays:load"}, context)
    assert data.x.shape == (4, 2)
    component = {"python": {"function": "dlx_test_arrays:load", "rows": 6}}
    assert call_source(component, context).x.shape == (6, 2)


def test_python_dataset(context):
    write_module(
        context.base_dir,
        "dlx_test_dataset",
        """
        import tensorflow as tf

        def load():
            return tf.data.Dataset.from_tensor_slices(([1.0, 2.0, 3.0], [0, 1, 0]))
        """,
    )
    data = call_source({"python": "dlx_test_dataset:load"}, context)
    assert data.x is None
    assert int(data.dataset.cardinality()) == 3


def test_python_unknown_argument_of_the_function(context):
    write_module(context.base_dir, "dlx_test_args", "def load(rows=4):\n    return [0], [0]\n")
    component = {"python": {"function": "dlx_test_args:load", "row": 6}}
    error = source_error(component, context)
    assert error.message == (
        "unknown argument 'row' for dlx_test_args:load (did you mean 'rows'?). Expected: rows"
    )
    assert error.path == ("python", "row")


def test_python_bad_reference(context):
    error = source_error({"python": "dlx_test_args.load"}, context)
    assert error.message == (
        "expected function to be 'module:function'. Received: 'dlx_test_args.load'"
    )


def test_python_missing_module(context):
    error = source_error({"python": "dlx_test_nowhere:load"}, context)
    assert error.message == (
        f"no module named 'dlx_test_nowhere' in {context.base_dir} or on sys.path"
    )


def test_python_missing_function(context):
    write_module(context.base_dir, "dlx_test_functions", "def load_data():\n    pass\n")
    error = source_error({"python": "dlx_test_functions:load_dat"}, context)
    assert error.message == (
        "module 'dlx_test_functions' has no function 'load_dat' (did you mean 'load_data'?)"
    )


def test_python_wrong_return(context):
    write_module(context.base_dir, "dlx_test_wrong", "def load():\n    return 3\n")
    error = source_error({"python": "dlx_test_wrong:load"}, context)
    assert error.message == (
        "expected dlx_test_wrong:load to return arrays (x, y) or a tf.data.Dataset. Received: int"
    )


def test_python_arrays_must_be_finite(context):
    write_module(
        context.base_dir,
        "dlx_test_nan",
        "import numpy as np\n\ndef load():\n    return {'a': np.array([1.0, np.inf])}, [0, 1]\n",
    )
    error = source_error({"python": "dlx_test_nan:load"}, context)
    assert error.message == (
        "the x['a'] that dlx_test_nan:load returns holds inf at index [1]: "
        "expected finite numbers (no NaN or infinity)"
    )
    assert error.path == ("python",)


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


@pytest.mark.parametrize("cell", ["inf", "NaN", "-Infinity", "1e39"])
def test_csv_features_must_be_finite(context, cell):
    write_csv(context.base_dir / "data.csv", f"a,b,label\n1,2,0\n3,{cell},1\n")
    error = source_error({"csv": {"path": "data.csv", "label": "label"}}, context)
    assert error.message == (
        f"column 'b' of data.csv holds '{cell}' on line 3: "
        "expected finite numbers (no NaN or infinity)"
    )
    assert error.path == ("csv",)


def test_csv_labels_must_be_finite(context):
    write_csv(context.base_dir / "data.csv", "a,label\n1,0.5\n2,nan\n")
    error = source_error({"csv": {"path": "data.csv", "label": "label"}}, context)
    assert error.message.startswith("column 'label' of data.csv holds 'nan' on line 3")
    assert error.path == ("csv", "label")


def test_csv_that_is_not_utf8(context):
    (context.base_dir / "data.csv").write_bytes(b"a,label\n\xff\xfe,1\n")
    error = source_error({"csv": {"path": "data.csv", "label": "label"}}, context)
    assert error.message.startswith("data.csv is not UTF-8 text")


def test_truncated_image_is_named(context, monkeypatch):
    monkeypatch.chdir(context.base_dir)
    write_images(context.base_dir / "pets", {"dog": [(16, 16)], "cat": [(16, 16)]})
    image = context.base_dir / "pets" / "dog" / "0.png"
    image.write_bytes(image.read_bytes()[:-40])
    error = source_error({"images": {"directory": "pets", "image_size": [8, 8]}}, context)
    assert error.message.startswith(f"could not read image {Path('pets', 'dog', '0.png')}: ")
    assert "truncated" in error.message
    assert error.path == ("images", "directory")


# check_source: what `dlx validate` finds without reading the data


def write_sources(base: Path) -> None:
    """Files for the sources below: each well formed as far as a check looks."""
    np.savez(base / "data.npz", x=np.ones((3, 2)), labels=np.arange(3))
    write_csv(base / "data.csv", "a,b,label\n1,2,0\n3,oops,1\n")
    (base / "empty").mkdir()
    (base / "flat").mkdir()
    (base / "flat" / "one.txt").write_text("no class folders")
    write_module(base, "dlx_test_checked", "def load(rows=3):\n    raise RuntimeError('read')\n")


CHECKED_FAULTS = [
    ({"sklearn": "digts"}, ("sklearn",), "unknown scikit-learn dataset 'digts' (did you mean"),
    ({"sklearn": {"name": "iris", "n_clas": 3}}, ("sklearn", "n_clas"), "unknown argument"),
    ({"keras": "mnits"}, ("keras",), "unknown keras dataset 'mnits' (did you mean 'mnist'"),
    ({"npz": "nowhere.npz"}, ("npz",), "no such file: nowhere.npz"),
    ({"npz": {"path": "data.npz", "y": "label"}}, ("npz", "y"), "array 'label' not in data.npz"),
    ({"csv": {"path": "data.csv", "label": "lable"}}, ("csv", "label"), "column 'lable' not in"),
    ({"csv": {"path": "data.csv", "label": "label", "features": ["c"]}}, ("csv", "features"), ""),
    ({"images": "empty"}, ("images",), "no class sub-folders in empty"),
    ({"images": {"directory": "flat", "image_size": [0, 4]}}, ("images", "image_size"), ""),
    ({"text": "flat"}, ("text",), "no class sub-folders in flat"),
    ({"synthetic": {"samples": 0, "x_shape": 2, "classes": 2}}, ("synthetic", "samples"), ""),
    ({"python": "dlx_test_nowhere:load"}, ("python",), "no module named 'dlx_test_nowhere'"),
    ({"python": "dlx_test_checked:lode"}, ("python",), "module 'dlx_test_checked' has no"),
    ({"python": {"function": "dlx_test_checked:load", "row": 1}}, ("python", "row"), ""),
    ({"skleran": "digits"}, (), "unknown data source 'skleran'"),
]


@pytest.mark.parametrize(("component", "path", "start"), CHECKED_FAULTS)
def test_check_finds_what_reading_finds(context, component, path, start):
    write_sources(context.base_dir)
    with pytest.raises(SourceError) as checked:
        check_source(component, context)
    read = source_error(component, context)
    assert (checked.value.message, checked.value.path) == (read.message, read.path)
    assert read.message.startswith(start) and read.path == path


def test_check_reads_no_data(context):
    write_sources(context.base_dir)
    for component in [
        {"csv": {"path": "data.csv", "label": "label"}},  # a bad cell on line 3
        {"python": "dlx_test_checked:load"},  # raises when called
        {"npz": {"path": "data.npz", "y": "labels"}},
        {"sklearn": "load_iris"},
        {"keras": "mnist"},  # not downloaded
        {"synthetic": {"samples": 10**12, "x_shape": [10**6], "classes": 2}},
    ]:
        check_source(component, context)
    read = source_error({"csv": {"path": "data.csv", "label": "label"}}, context)
    assert read.message.startswith("column 'b' of data.csv is not numeric")
