"""The csv source, read from real files the tests write."""

import numpy as np
import pytest

from dlx.data import call_source
from tests.data.sources.helpers import decoded, source_error, write_csv


def test_csv_numeric_label_and_default_features(context):
    write_csv(context.base_dir / "data.csv", "a,label,b\n1,0,2.5\n3,1,4\n5,2,6\n")
    data = call_source({"csv": {"path": "data.csv", "label": "label"}}, context)
    x, y = decoded(data)
    np.testing.assert_array_equal(x, [[1, 2.5], [3, 4], [5, 6]])
    assert x.dtype == np.float32
    assert list(y) == [0, 1, 2] and np.issubdtype(y.dtype, np.integer)
    assert list(data.stream.labels) == [0, 1, 2]
    assert data.class_names is None


def test_csv_labels_of_several_outputs_by_output_name(context):
    write_csv(context.base_dir / "data.csv", "a,kind,b,size\n1,dog,2,0.5\n3,cat,4,1.5\n")
    data = call_source(
        {"csv": {"path": "data.csv", "label": {"animal": "kind", "size": "size"}}}, context
    )
    x, y = decoded(data)
    np.testing.assert_array_equal(x, [[1, 2], [3, 4]])
    assert list(y["animal"]) == [1, 0] and y["animal"].dtype == np.int32  # cat, dog
    np.testing.assert_allclose(y["size"], [0.5, 1.5])
    assert data.stream.labels is None and data.class_names is None
    assert data.description.endswith("labels 'kind', 'size'")


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


# finite numbers, and files that cannot be read


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
