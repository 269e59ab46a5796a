"""Every kind of component refuses a malformed one at its place, through `dlx validate`."""

import pytest
from typer.testing import CliRunner

from dlx.cli import app

HEAD = "version: 1\nmodel:\n  layers:\n    - input: {shape: [4]}\n"


@pytest.mark.parametrize(
    ("tail", "expected"),
    [
        (
            "    - dense: {units: 3, kernel_regularizer: {}}\n",
            "spec.yaml:5:45: error: model.layers.1.dense.kernel_regularizer: expected a "
            "regularizer: a name, or a mapping with exactly one key (the name). "
            "Received an empty mapping",
        ),
        (
            "    - dense: {units: 3, activation: {}}\n",
            "spec.yaml:5:37: error: model.layers.1.dense.activation: expected an activation",
        ),
        (
            "    - dense: 3\ntrain:\n  optimizer: {adam: {learning_rate: {}}}\n",
            "spec.yaml:7:37: error: train.optimizer.adam.learning_rate: expected a learning-rate "
            "schedule",
        ),
        (
            "    - dense: 3\ntrain:\n  loss: 5\n",
            "spec.yaml:7:9: error: train.loss: expected a loss: a name, or a mapping with exactly "
            "one key (the name). Received: 5 (a number)",
        ),
        ("    - dense: 3\ntrain:\n  loss: true\n", "spec.yaml:7:9: error: train.loss: expected"),
        ("    - dense: 3\ntrain:\n  loss: [1, 2]\n", "spec.yaml:7:10: error: train.loss.0: "),
        (
            "    - residual: {main: [dense: 4], merge: [a, b]}\n",
            "spec.yaml:5:43: error: model.layers.1.residual.merge: expected a layer",
        ),
        (
            "    - dense: {units: 10, 1: 2}\n",
            "spec.yaml:5:26: error: model.layers.1.dense.1: expected an argument name. "
            "Received: 1 (a number)",
        ),
        (
            "    - hidden: {repeat: 2, 5: 1}\n  blocks:\n    hidden: {layers: [dense: 4]}\n",
            "spec.yaml:5:27: error: model.layers.1.hidden.5: expected an argument name",
        ),
        (
            "    - dense: {units: 3, kernel_initializer: {glorot_uniform: {7: 1}}}\n",
            "spec.yaml:5:63: error: model.layers.1.dense.kernel_initializer.glorot_uniform.7: "
            "expected an argument name",
        ),
        (
            "    - dense: 3\ntrain:\n  metrics: [{}]\n  callbacks: [[early_stopping]]\n",
            "spec.yaml:7:13: error: train.metrics.0: expected a metric",
        ),
        (
            "    - dense: 3\ntrain:\n  metrics: {out: [7]}\n",
            "spec.yaml:7:19: error: train.metrics.out.0: expected a metric",
        ),
    ],
)
def test_malformed_components_are_located_errors(tmp_path, monkeypatch, tail, expected):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "spec.yaml").write_text(HEAD + tail)
    result = CliRunner().invoke(app, ["validate", "spec.yaml"])
    assert "Traceback" not in result.output
    assert result.exit_code == 2, result.output
    assert expected in result.stderr
