"""`dlx.deploy.scoring_app`: the nesting of a JSON body, counted without recursion (the limits
themselves are asked of a real server in test_serve.py); tables (`dataframe_split`) served to a
model whose input is a row of features and refused to others, asked of a worker's app in this
process."""

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest

from dlx.deploy.scoring_app import (
    MAX_BYTES_VARIABLE,
    MB,
    MODEL_VARIABLE,
    create_app,
    json_depth,
    table_refusal,
)


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        (b"", 0),
        (b"3.5", 0),
        (b'{"inputs": [[1, 2], [3, 4]]}', 3),
        (b'{"inputs": {"numbers": [[1]], "flags": [[[0]]]}}', 5),
        (b'{"inputs": ["[[[{{{", "}}]]"]}', 2),  # brackets in strings do not count
        (b'{"a": "quote \\" [[[ and backslash \\\\", "b": [[]]}', 3),  # nor past escapes
        (b"[" * 100_000 + b"]" * 100_000, 100_000),
    ],
)
def test_depth_counts_arrays_and_objects_outside_strings(text, depth):
    assert json_depth(text) == depth


def test_depth_is_counted_across_the_chunks_of_a_large_body():
    """Its deepest point comes two chunks in, at the level the chunks before it ended on."""
    body = b"[[" + b"[], " * 2**22 + b"[[[]]]" + b"]]"
    assert json_depth(body) == 5


def table_refusal_of(*shapes, names=None):
    from mlflow.types.schema import Schema, TensorSpec

    names = names or [None] * len(shapes)
    specs = [TensorSpec(np.dtype("float32"), s, n) for s, n in zip(shapes, names, strict=True)]
    return table_refusal(Schema(specs))


def test_a_table_is_refused_to_a_model_whose_input_is_not_a_row_of_features():
    assert table_refusal_of((-1, 64)) is None
    assert table_refusal_of((-1,)) is None
    image = table_refusal_of((-1, 8, 8, 1))
    assert "this model's input has shape (-1, 8, 8, 1)" in image
    assert '{"inputs": [...]} or {"instances": [...]}' in image
    two = table_refusal_of((-1, 8), (-1, 4), names=["numbers", "flags"])
    assert "2 inputs: numbers (-1, 8), flags (-1, 4)" in two
    assert '{"inputs": {"numbers": [...], "flags": [...]}}' in two


def post(app, body: dict, content_type: bytes = b"application/json") -> tuple[int, dict]:
    """`POST /invocations` with `body` to the ASGI `app`, in this process."""
    messages = [{"type": "http.request", "body": json.dumps(body).encode(), "more_body": False}]
    sent = []

    async def receive():
        return messages.pop() if messages else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/invocations",
        "raw_path": b"/invocations",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"content-type", content_type)],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    asyncio.run(app(scope, receive, send))
    return sent[0]["status"], json.loads(b"".join(m.get("body", b"") for m in sent[1:]))


def served_app(model, x, folder: Path, monkeypatch):
    """The app a `dlx serve` worker builds (`create_app`) on `model`, saved as dlx saves it."""
    import keras
    import mlflow.keras
    from mlflow.models import infer_signature

    from dlx.deploy.serve import save_serving_model

    signature = infer_signature(x, model.predict(x, verbose=0))
    # Requirements given, as dlx gives them: inferring them from the environment takes seconds.
    requirements = [f"keras=={keras.__version__}"]
    mlflow.keras.save_model(
        model, str(folder / "logged"), signature=signature, pip_requirements=requirements
    )
    monkeypatch.setenv(MODEL_VARIABLE, str(save_serving_model(folder / "logged", folder)))
    monkeypatch.setenv(MAX_BYTES_VARIABLE, str(MB))
    return create_app()


def test_dataframe_split_is_served_to_a_flat_model_and_refused_to_an_image_model(
    tmp_path, monkeypatch
):
    """A table's columns are the features of a model whose input is one row of them; to any
    other model it is HTTP 400 naming the input's shape, before MLflow reads it."""
    import keras

    rows = np.arange(8, dtype="float32").reshape(2, 4) / 8
    features = keras.Input((4,))
    flat = keras.Model(features, keras.layers.Dense(3)(features))
    app = served_app(flat, rows, tmp_path / "flat", monkeypatch)
    table = {"columns": ["a", "b", "c", "d"], "data": rows.tolist()}
    status, answer = post(app, {"dataframe_split": table})
    assert status == 200, answer
    expected = flat.predict(rows, verbose=0)
    np.testing.assert_allclose(answer["predictions"], expected, atol=1e-6)

    image = keras.Input((2, 2, 1))
    cnn = keras.Model(image, keras.layers.Dense(3)(keras.layers.Flatten()(image)))
    app = served_app(cnn, rows.reshape(2, 2, 2, 1), tmp_path / "image", monkeypatch)
    for body in ({"dataframe_split": table}, {"dataframe_records": [{"a": 1.0}]}):
        status, answer = post(app, body)
        assert status == 400
        assert answer["error_code"] == "BAD_REQUEST"
        assert "this model's input has shape (-1, 2, 2, 1)" in answer["message"]
    status, answer = post(app, {"inputs": rows.reshape(2, 2, 2, 1).tolist()})
    assert status == 200
