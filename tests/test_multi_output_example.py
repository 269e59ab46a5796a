"""examples/multi_output: two outputs trained from a mapping of targets, exported and served;
and the mistakes of several outputs, each located."""

import shutil
import textwrap

import numpy as np
import pytest

from dlx import api
from tests.conftest import ROOT
from tests.in_process import dlx_in_process

pytestmark = pytest.mark.slow  # trains

EXAMPLE = ROOT / "examples" / "multi_output"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The example trained as its README says: (folder, store URI, result)."""
    folder = tmp_path_factory.mktemp("two_heads")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    result = api.train(EXAMPLE / "digits_two_heads.yaml", tracking_uri=uri)
    return folder, uri, result


def test_both_outputs_learn_and_the_loss_is_their_weighted_sum(trained):
    _, _, result = trained
    metrics = result.metrics
    assert metrics["val_digit_accuracy"] >= 0.95
    assert metrics["val_ink_mae"] <= 0.05
    assert metrics["loss"] == pytest.approx(
        metrics["digit_loss"] + 10 * metrics["ink_loss"], rel=1e-2
    )
    assert {"test_digit_accuracy", "test_ink_mae"} <= set(metrics)


def test_both_outputs_export_and_are_served(trained, tmp_path):
    import mlflow.pyfunc
    from sklearn.datasets import load_digits

    from dlx.deploy.serve import save_serving_model
    from dlx.track.logged_models import download_logged_model

    _, uri, result = trained
    done = api.export(result.run_id, output=tmp_path / "export", tracking_uri=uri)
    assert [c.format for c in done.checks] == ["saved_model", "onnx", "litert"]
    assert all(c.max_abs_diff <= 1e-5 for c in done.checks)

    # What `dlx serve` answers with: the logged model in its serving wrapper.
    local = download_logged_model(uri, result.run_id, "model", tmp_path / "logged")
    served = mlflow.pyfunc.load_model(str(save_serving_model(local, tmp_path)))
    x = (load_digits().images[:8] / 16.0).astype("float32")[..., None]
    answer = served.predict(x)
    digit, ink = result.model.predict(x, verbose=0)
    assert set(answer) == {"digit", "ink"}
    np.testing.assert_allclose(answer["digit"], digit, atol=1e-6)
    np.testing.assert_allclose(answer["ink"], ink, atol=1e-6)


TWO_OUTPUTS = """\
version: 1
name: two
data:
  source: {source}
  validation_split: 0.25
model:
  layers:
    - input: {{shape: [3], name: x}}
    - dense: {{units: 4, name: trunk}}
    - dense: {{units: 2, activation: softmax, inputs: trunk, name: kind}}
    - dense: {{units: 1, inputs: trunk, name: size}}
  outputs: [kind, size]
train:
  epochs: 1
  loss: {{kind: sparse_categorical_crossentropy, size: mse}}
{extra}"""


def write_two(folder, source, extra=""):
    np.savez(
        folder / "two.npz",
        x=np.ones((8, 3)),
        kind=np.arange(8) % 2,
        size=np.ones(8),
        bad=-np.ones(8),
    )
    (folder / "two_data.py").write_text(
        textwrap.dedent(
            """
            import numpy as np

            def load():
                return np.ones((8, 3)), {"kind": np.arange(8) % 2, "sise": np.ones(8)}
            """
        )
    )
    spec = folder / "two.yaml"
    spec.write_text(TWO_OUTPUTS.format(source=source, extra=extra))
    return spec


@pytest.mark.parametrize(
    ("command", "source", "extra", "error"),
    [
        (
            "validate",
            "{npz: {path: two.npz, y: kind}}",
            "",
            "4:36: error: data.source.npz.y: the model has 2 outputs (kind, size): give the "
            "targets of each, as a mapping of output name to y",
        ),
        (
            "validate",
            "{npz: {path: two.npz, y: {kind: kind, sise: size}}}",
            "",
            "error: data.source.npz.y.sise: the model has no output 'sise' (did you mean "
            "'size'?). Outputs: kind, size",
        ),
        (
            "validate",
            "{npz: {path: two.npz, y: {kind: kind, size: size}}}",
            "  loss_weights: {kind: 1, sise: 2}\n",
            "error: train.loss_weights.sise: the model has no output 'sise' (did you mean "
            "'size'?). Outputs: kind, size",
        ),
        (
            "train",
            "{python: two_data:load}",
            "",
            "4:11: error: data.source: the data's targets (kind, sise) do not match the model's "
            "outputs (kind, size): no output named sise; no targets for size",
        ),
        (
            "train",
            "{npz: {path: two.npz, y: {kind: bad, size: size}}}",
            "",
            "error: data.source: output 'kind': labels go down to -1",
        ),
        (
            "train",
            "{npz: {path: two.npz, y: {kind: kind, size: size}}}",
            "  class_weight: balanced\n",
            "error: train.class_weight: class weights weigh the classes of one output; this "
            "model has several (weigh the outputs with train.loss_weights instead)",
        ),
    ],
)
def test_the_mistakes_of_several_outputs_are_located(tmp_path, command, source, extra, error):
    spec = write_two(tmp_path, source, extra)
    done = dlx_in_process(command, str(spec), cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert error in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "mlflow.db").exists() or command == "train"


def test_the_example_validates_from_its_own_folder(tmp_path):
    shutil.copytree(EXAMPLE, tmp_path / "example")
    done = dlx_in_process("validate", "example/digits_two_heads.yaml", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
