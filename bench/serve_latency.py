"""How fast does a run's model answer: through `dlx serve`, in-process, and as ONNX? Prints one
JSON line, last.

Trains the digits CNN (`specs/digits_cnn.yaml`) for one epoch into a scratch store, then times
the same inputs three ways:

- `dlx serve`: MLflow's scoring server, HTTP POST `/invocations` on 127.0.0.1 (urllib, one
  connection per request: what a simple client pays);
- `model.predict`: the Keras model in this process (`predict_on_batch`, no per-call set-up);
- ONNX Runtime: the model's `dlx export --format onnx` file, `InferenceSession.run`.

Latency: p50 and p99 of `--requests` calls with a batch of 1. Throughput: examples per second
over `--requests` calls with a batch of 32, sequential (one client). Usage:

    python bench/serve_latency.py [--requests 500] [--workers 2]
    python bench/serve_latency.py --small          # a quick check: 30 requests
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def timed(call, inputs, requests: int) -> list[float]:
    """Seconds per call, after 5 calls to warm up."""
    for _ in range(5):
        call(inputs)
    times = []
    for _ in range(requests):
        started = time.perf_counter()
        call(inputs)
        times.append(time.perf_counter() - started)
    return times


def figures(batch_1: list[float], batch_32: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(float(np.percentile(batch_1, 50)) * 1000, 3),
        "p99_ms": round(float(np.percentile(batch_1, 99)) * 1000, 3),
        "throughput_b32_per_s": round(32 * len(batch_32) / sum(batch_32), 1),
    }


def http_predict(port: int):
    url = f"http://127.0.0.1:{port}/invocations"

    def call(x: np.ndarray) -> None:
        body = json.dumps({"inputs": x.tolist()}).encode()
        request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as answer:
            answer.read()

    return call


def wait_for_ping(port: int, server: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"dlx serve exited with status {server.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("dlx serve did not answer /ping in time")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--small", action="store_true", help="30 requests: a quick check")
    args = parser.parse_args()
    requests = 30 if args.small else args.requests

    from dlx import api
    from dlx.track.logged_models import load_logged_model

    with tempfile.TemporaryDirectory() as folder:
        uri = f"sqlite:///{folder}/mlflow.db"
        run_id = api.train(
            ROOT / "specs" / "digits_cnn.yaml", ["train.epochs=1"], tracking_uri=uri
        ).run_id
        model = load_logged_model(uri, run_id)
        api.export(run_id, ["onnx"], output=Path(folder) / "export", tracking_uri=uri)

        import onnxruntime

        session = onnxruntime.InferenceSession(
            str(Path(folder) / "export" / "onnx" / "model.onnx"),
            providers=["CPUExecutionProvider"],
        )
        name = session.get_inputs()[0].name
        rng = np.random.default_rng(0)
        one = rng.random((1, 8, 8, 1), dtype=np.float32)
        many = rng.random((32, 8, 8, 1), dtype=np.float32)
        results = {}
        keras_call = model.predict_on_batch
        results["keras_predict"] = figures(
            timed(keras_call, one, requests), timed(keras_call, many, requests)
        )

        def onnx_call(x):
            return session.run(None, {name: x})

        results["onnx_runtime"] = figures(
            timed(onnx_call, one, requests), timed(onnx_call, many, requests)
        )

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        command = [sys.executable, "-m", "dlx", "serve", run_id, "--port", str(port)]
        command += ["--workers", str(args.workers), "--tracking-uri", uri]
        server = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=folder
        )
        try:
            wait_for_ping(port, server)
            call = http_predict(port)
            results["dlx_serve"] = figures(timed(call, one, requests), timed(call, many, requests))
        finally:
            server.terminate()
            server.wait(timeout=60)
    print(json.dumps({"requests": requests, "workers": args.workers, **results}))


if __name__ == "__main__":
    main()
