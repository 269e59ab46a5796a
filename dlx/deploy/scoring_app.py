"""The app of each `dlx serve` worker: MLflow's scoring app behind limits on what a request holds.

uvicorn builds it in each worker process (`uvicorn --factory dlx.deploy.scoring_app:create_app`)
from what `dlx.deploy.serve` puts in the environment: the model to serve (`MODEL_VARIABLE`) and
the largest body a request may have (`MAX_BYTES_VARIABLE`). MLflow's own app
(`mlflow.pyfunc.scoring_server.init`) answers every request that passes `RequestLimits`, an ASGI
middleware in front of it that reads each body first:

- a body over the limit is HTTP 413 as soon as its `Content-Length` says so, else as soon as
  that many bytes have come: the rest is never held in memory;
- JSON nested deeper than `MAX_JSON_DEPTH` is HTTP 400. Python's JSON parser, and MLflow's
  copy of what it parsed, recurse once per level: a deep enough body (100,000 levels fit in
  200 KB) raised `RecursionError` in them, answered 500. The depth is counted without recursion.

A model whose input is not one row of features per example (an image, a sequence, several
inputs) cannot take a table: MLflow reads `dataframe_split`, `dataframe_records` and CSV as a
pandas DataFrame, a column per feature, and answers such a model 400 in words about
DataFrame columns. `table_refusal` says instead what the model's input is and what to send;
`RequestLimits` answers a table with it (400) before MLflow reads it.

All answer as MLflow answers its own errors: JSON `{"error_code": ..., "message": ...}`.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

MODEL_VARIABLE = "DLX_SERVE_MODEL"
"""The environment variable that names the folder of the model the workers serve."""

MAX_BYTES_VARIABLE = "DLX_SERVE_MAX_REQUEST_BYTES"
"""The environment variable that holds the largest request body, in bytes."""

MAX_JSON_DEPTH = 64
"""The deepest nesting of arrays and objects a JSON body may have: far more than a model's
inputs need (a batch of images in `{"inputs": ...}` is 5 levels), and far below what Python's
recursion limit lets its JSON parser and MLflow read."""

MB = 1024 * 1024
"""The megabyte of `--max-request-mb`."""

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

# A JSON string, its escapes included: what is inside one is not nesting.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(code for code in range(256) if code not in b"[]{}")
_CHUNK = 1 << 22


TABLE_KEYS = ("dataframe_split", "dataframe_records")
"""The keys of a JSON body that hold a table (MLflow reads it as a pandas DataFrame)."""


def create_app() -> App:
    """MLflow's scoring app on the model named by `MODEL_VARIABLE`, behind `RequestLimits`.

    TensorFlow is imported first, and its devices found, without its start-up noise (CUDA
    probes, oneDNN notes: `dlx.tensorflow_import`), as `dlx train` imports it: each worker
    would print them."""
    from mlflow.pyfunc import scoring_server

    from dlx.tensorflow_import import import_tensorflow_quietly

    import_tensorflow_quietly()
    model = scoring_server.load_model_with_mlflow_config(os.environ[MODEL_VARIABLE])
    return RequestLimits(
        scoring_server.init(model),
        int(os.environ[MAX_BYTES_VARIABLE]),
        not_a_table=table_refusal(model.metadata.get_input_schema()),
    )


def table_refusal(schema: Any) -> str | None:
    """Why a model of this input schema (MLflow's, of tensors) cannot take a table, naming its
    input's shape and what to send instead; `None` when it can: one input of at most one axis
    per example (shape `(-1, features)` or `(-1,)`), whose features are the table's columns."""
    if schema is None or not schema.is_tensor_spec():
        return None  # columns, which MLflow itself checks a table against
    specs = schema.inputs
    if len(specs) == 1 and len(specs[0].shape) <= 2:
        return None
    if len(specs) == 1:
        shape = tuple(specs[0].shape)
        what = f"this model's input has shape {shape}, more than a row of features per example"
        send = '{"inputs": [...]} or {"instances": [...]}, arrays of that shape'
    else:
        inputs = ", ".join(f"{spec.name} {tuple(spec.shape)}" for spec in specs)
        what = f"this model has {len(specs)} inputs: {inputs}"
        named = ", ".join(f'"{spec.name}": [...]' for spec in specs)
        send = f'{{"inputs": {{{named}}}}}, each an array of its shape'
    return (
        f"dataframe_split, dataframe_records and CSV hold a table, a row of features per "
        f"example, for a model whose input is one such row; {what}. Send {send}"
    )


class RequestLimits:
    """An ASGI middleware that answers requests too large or too deeply nested for `app`.

    Each HTTP request's body is read here, then handed to `app` whole. A body of more than
    `max_bytes` is answered 413, and its `Content-Length` (when it has one) is checked before
    any of it is read; JSON (`Content-Type: application/json`) nested deeper than `max_depth`
    is answered 400; with `not_a_table` (`table_refusal`), so is a table (`TABLE_KEYS` in
    JSON, or CSV), with that message.
    """

    def __init__(
        self,
        app: App,
        max_bytes: int,
        max_depth: int = MAX_JSON_DEPTH,
        not_a_table: str | None = None,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_depth = max_depth
        self.not_a_table = not_a_table

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {name.lower(): value for name, value in scope["headers"]}
        declared = headers.get(b"content-length", b"").strip()
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self._too_large(send, f"Received: Content-Length {int(declared):,} bytes")
            return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                await self._too_large(send, f"Received: more than {self.max_bytes:,} bytes")
                return
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        mime = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if mime == b"application/json" and body:
            depth = await asyncio.to_thread(json_depth, body)
            if depth > self.max_depth:
                await _answer(
                    send,
                    400,
                    "BAD_REQUEST",
                    f"the JSON body is nested {depth:,} levels deep; the server reads at most "
                    f"{self.max_depth} levels of arrays and objects",
                )
                return
        if self.not_a_table is not None and await asyncio.to_thread(_is_table, mime, body):
            await _answer(send, 400, "BAD_REQUEST", self.not_a_table)
            return
        await self.app(scope, _replay(body, receive), send)

    async def _too_large(self, send: Send, received: str) -> None:
        limit = self.max_bytes / MB
        await _answer(
            send,
            413,
            "RESOURCE_LIMIT_EXCEEDED",
            f"the request body is larger than the server's limit of {limit:g} MB "
            f"({self.max_bytes:,} bytes; dlx serve --max-request-mb): send fewer examples per "
            f"request. {received}",
        )


def json_depth(text: bytes) -> int:
    """The deepest nesting of arrays and objects in a JSON text, counted without recursion.

    Brackets inside strings do not count; the text need not be valid JSON (a bracket without
    its pair counts where it stands). `{"inputs": [[1, 2]]}` is 3 levels deep.
    """
    import numpy as np

    step = np.zeros(256, dtype=np.int8)  # by byte: +1 opens a level, -1 closes one
    step[[ord("["), ord("{")]], step[[ord("]"), ord("}")]] = 1, -1
    brackets = _STRING.sub(b"", text).translate(None, _NOT_BRACKETS)
    codes = np.frombuffer(brackets, dtype=np.uint8)
    deepest = level = 0
    for start in range(0, codes.size, _CHUNK):  # in chunks: the levels take 8 bytes a byte
        levels = np.cumsum(step[codes[start : start + _CHUNK]], dtype=np.int64) + level
        deepest, level = max(deepest, int(levels.max())), int(levels[-1])
    return deepest


def _is_table(mime: bytes, body: bytes) -> bool:
    """Whether a request's body holds a table: CSV, or JSON with a `TABLE_KEYS` key (parsed
    only when one is written in it)."""
    if mime == b"text/csv":
        return True
    if mime != b"application/json" or not any(key.encode() in body for key in TABLE_KEYS):
        return False
    try:
        parsed = json.loads(body)
    except ValueError:
        return False  # MLflow says what is wrong with it
    return isinstance(parsed, dict) and any(key in parsed for key in TABLE_KEYS)


def _replay(body: bytes, receive: Receive) -> Receive:
    """`receive` for the app behind: the body read, in one message, then the connection's own
    messages (a disconnect)."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replayed() -> Message:
        return pending.pop() if pending else await receive()

    return replayed


async def _answer(send: Send, status: int, error_code: str, message: str) -> None:
    body = json.dumps({"error_code": error_code, "message": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
