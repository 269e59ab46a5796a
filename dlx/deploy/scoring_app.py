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

Both answer as MLflow answers its own errors: JSON `{"error_code": ..., "message": ...}`.
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


def create_app() -> App:
    """MLflow's scoring app on the model named by `MODEL_VARIABLE`, behind `RequestLimits`."""
    from mlflow.pyfunc import scoring_server

    model = scoring_server.load_model_with_mlflow_config(os.environ[MODEL_VARIABLE])
    return RequestLimits(scoring_server.init(model), int(os.environ[MAX_BYTES_VARIABLE]))


class RequestLimits:
    """An ASGI middleware that answers requests too large or too deeply nested for `app`.

    Each HTTP request's body is read here, then handed to `app` whole. A body of more than
    `max_bytes` is answered 413, and its `Content-Length` (when it has one) is checked before
    any of it is read; JSON (`Content-Type: application/json`) nested deeper than `max_depth`
    is answered 400.
    """

    def __init__(self, app: App, max_bytes: int, max_depth: int = MAX_JSON_DEPTH) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_depth = max_depth

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
