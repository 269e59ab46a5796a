"""The synthetic source, and the python source's functions the tests write."""

import numpy as np

from dlx.data import SourceContext, call_source
from tests.data.sources.helpers import source_error, write_module

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


def test_python_targets_of_several_outputs_by_output_name(context):
    write_module(
        context.base_dir,
        "dlx_test_two_heads",
        """
        import numpy as np

        def load():
            return np.ones((3, 2)), {"kind": [0, 1, 0], "size": [0.5, float("nan"), 1.0]}
        """,
    )
    error = source_error({"python": "dlx_test_two_heads:load"}, context)
    assert str(error).startswith("the y['size'] that dlx_test_two_heads:load returns holds nan")


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
