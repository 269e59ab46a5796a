"""The registry of sources: the messages of call_source, and what check_source finds."""

from pathlib import Path

import numpy as np
import pytest

from dlx.data import SOURCES, SourceError, call_source, check_source
from tests.data.sources.helpers import source_error, write_csv, write_module


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
