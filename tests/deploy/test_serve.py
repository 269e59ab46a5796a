"""`dlx serve`: MLflow's scoring server on a run's model, asked over real HTTP on 127.0.0.1."""

import http.client
import json
import os
import signal
import socket
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from dlx.track.logged_models import load_logged_model
from tests.in_process import dlx_in_process
from tests.train.processes import BOUND_S, kill_group, processes_with, start, wait_for

pytestmark = pytest.mark.slow

SERVER = ("DLX_TEST_SERVER", uuid.uuid4().hex)
"""The environment variable that marks the processes of this module's server, and its value."""

UVICORN_HEALTHCHECK_S = 5
"""How long uvicorn waits by default for a worker to answer its health check before it kills it."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def post(port: int, body: bytes) -> tuple[int, dict]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/invocations",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def ping(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=5) as answer:
            return answer.status == 200
    except OSError:
        return False


def workers() -> list[int]:
    """The uvicorn workers of this module's server."""
    return [
        pid
        for pid in processes_with(*SERVER)
        if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]


@pytest.fixture(scope="module")
def served(folder, uri, cnn):
    """A digits CNN run, served by `dlx serve` with two workers and a 1 MB request limit on a
    free port: (folder, uri, run id, port). SIGTERM stops it at the end, as `docker stop`
    would: dlx exits 143, and none of the server's processes outlives it."""
    run_id = cnn
    port = free_port()
    server = start(
        "serve",
        run_id,
        "--port",
        str(port),
        "--max-request-mb",
        "1",
        cwd=folder,
        env=dict([SERVER]),
    )
    try:
        wait_for(lambda: ping(port) or server.poll() is not None, "dlx serve to answer /ping")
        assert server.poll() is None, server.stdout.read()
        yield folder, uri, run_id, port
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=BOUND_S) == 143
        wait_for(lambda: not processes_with(*SERVER), "the server's processes to end")
    finally:
        kill_group(server)
        for pid in processes_with(*SERVER):
            os.kill(pid, signal.SIGKILL)


class TestSharedRuns:
    """The tests of the shared runs (tests/deploy/conftest.py), here and in the other module's
    class of this name: together in one worker, which trains each once (tests/conftest.py)."""

    def test_predictions_over_http_are_model_predict_s_in_each_json_form(self, served):
        folder, uri, run_id, port = served
        from sklearn.datasets import load_digits

        x = (load_digits().images[:16] / 16.0).astype("float32")[..., None]
        expected = load_logged_model(uri, run_id).predict(x, verbose=0)
        for key in ("inputs", "instances"):
            status, answer = post(port, json.dumps({key: x.tolist()}).encode())
            assert status == 200
            got = np.asarray(answer["predictions"])
            assert got.shape == (16, 10)
            assert (got.argmax(-1) == expected.argmax(-1)).all()
            np.testing.assert_allclose(got, expected, atol=1e-5)

    def test_a_malformed_body_a_wrong_shape_and_a_wrong_type_are_http_400(self, served):
        _, _, _, port = served
        status, answer = post(port, b"{inputs: [")
        assert status == 400 and "Invalid input" in answer["message"]
        status, answer = post(port, json.dumps({"inputs": np.zeros((2, 8, 8)).tolist()}).encode())
        assert status == 400
        assert (
            "Shape of input (2, 8, 8) does not match expected shape (-1, 8, 8, 1)"
            in (answer["message"])
        )
        status, answer = post(port, json.dumps({"inputs": [[["a"] * 8] * 8]}).encode())
        assert status == 400 and "could not convert string to float" in answer["message"]

    def test_a_table_to_an_image_model_is_400_naming_its_shape_and_what_to_send(self, served):
        _, _, _, port = served
        table = {"columns": [str(i) for i in range(64)], "data": [[0.0] * 64]}
        status, answer = post(port, json.dumps({"dataframe_split": table}).encode())
        assert status == 400
        assert "this model's input has shape (-1, 8, 8, 1)" in answer["message"]
        assert 'Send {"inputs": [...]} or {"instances": [...]}' in answer["message"]

    def test_concurrent_requests_are_all_answered(self, served):
        _, _, _, port = served
        body = json.dumps({"inputs": np.zeros((32, 8, 8, 1)).tolist()}).encode()
        with ThreadPoolExecutor(8) as pool:
            statuses = [status for status, _ in pool.map(lambda _: post(port, body), range(16))]
        assert statuses == [200] * 16

    def test_a_body_over_the_limit_is_413_before_it_is_read_and_the_server_goes_on(self, served):
        _, _, _, port = served
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        connection.putrequest("POST", "/invocations")
        connection.putheader("Content-Type", "application/json")
        connection.putheader("Content-Length", str(3 * 2**20))
        connection.endheaders()  # and not a byte of the body: the answer comes all the same
        answer = connection.getresponse()
        assert answer.status == 413
        message = json.loads(answer.read())["message"]
        assert "larger than the server's limit of 1 MB (1,048,576 bytes" in message
        assert "--max-request-mb" in message and "Content-Length 3,145,728 bytes" in message
        connection.close()
        # Without a Content-Length (chunked), the body is cut where it passes the limit.
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        chunks = (b"0" * 2**16 for _ in range(48))
        connection.request("POST", "/invocations", chunks, {"Content-Type": "application/json"})
        answer = connection.getresponse()
        assert answer.status == 413
        assert "Received: more than 1,048,576 bytes" in json.loads(answer.read())["message"]
        connection.close()
        status, answer = post(
            port, json.dumps({"inputs": np.zeros((1, 8, 8, 1)).tolist()}).encode()
        )
        assert status == 200

    def test_json_nested_too_deep_is_400_before_mlflow_reads_it(self, served):
        _, _, _, port = served
        status, answer = post(port, b'{"inputs": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")
        assert status == 400
        assert answer["message"] == (
            "the JSON body is nested 100,001 levels deep; the server reads at most 64 levels of "
            "arrays and objects"
        )

    def test_a_worker_silent_past_uvicorn_s_health_check_is_not_killed(self, served):
        """A request that holds the worker's interpreter (Python's JSON parser on a body of tens
        of MB) keeps the thread that answers uvicorn's health check from answering, as SIGSTOP
        does here; uvicorn's own 5 s would kill the worker. The wait is the point of the test:
        nothing is to happen in it."""
        _, _, _, port = served
        before = workers()
        assert len(before) == 2
        os.kill(before[0], signal.SIGSTOP)
        try:
            time.sleep(UVICORN_HEALTHCHECK_S + 1.5)  # its checks come every 0.5 s
        finally:
            os.kill(before[0], signal.SIGCONT)
        assert sorted(workers()) == sorted(before)
        assert all(ping(port) for _ in range(4))

    def test_a_taken_port_is_exit_2(self, served):
        folder, _, run_id, port = served
        result = dlx_in_process("serve", run_id, "--port", str(port), cwd=folder)
        assert result.returncode == 2
        assert f"--port: cannot listen on 127.0.0.1:{port}" in result.stderr

    def test_named_inputs_as_in_the_spec_and_a_worker_without_tensorflow_s_noise(
        self, folder, two_inputs
    ):
        run_id = two_inputs
        port = free_port()
        server = start("serve", run_id, "--port", str(port), "--workers", "1", cwd=folder)
        try:
            wait_for(lambda: ping(port) or server.poll() is not None, "dlx serve to answer /ping")
            rows = {"numbers": np.ones((3, 8)).tolist(), "flags": np.zeros((3, 4)).tolist()}
            status, answer = post(port, json.dumps({"inputs": rows}).encode())
            assert status == 200 and np.asarray(answer["predictions"]).shape == (3, 3)
            status, answer = post(
                port, json.dumps({"inputs": {"numbers": rows["numbers"]}}).encode()
            )
            assert status == 400 and "flags" in answer["message"]
            table = {"columns": ["numbers", "flags"], "data": [[[1.0] * 8, [0.0] * 4]]}
            status, answer = post(port, json.dumps({"dataframe_split": table}).encode())
            assert status == 400
            message = answer["message"]
            assert "2 inputs" in message and "numbers (-1, 8)" in message
            assert "flags (-1, 4)" in message
        finally:
            kill_group(server)
        # The worker loaded TensorFlow and the model (the answers above) without a word of
        # TensorFlow's own: no CUDA probe, no oneDNN note.
        output = server.stdout.read()
        assert "Application startup complete" in output
        assert "cuInit" not in output and "oneDNN" not in output and "I0000" not in output, output

    def test_the_served_model_answers_string_inputs_as_model_predict(self, uri, reviews, tmp_path):
        import mlflow.pyfunc

        from dlx.deploy.serve import save_serving_model
        from dlx.track.logged_models import download_logged_model

        run_id = reviews
        texts = np.array(["good bad fine", "awful great poor poor", "fine"], dtype=object)
        expected = load_logged_model(uri, run_id).predict(texts, verbose=0)
        served = mlflow.pyfunc.load_model(
            str(save_serving_model(download_logged_model(uri, run_id, "model", tmp_path), tmp_path))
        )
        got = served.predict(texts)
        assert got.shape == (3, 2)
        np.testing.assert_allclose(got, expected, atol=1e-6)


def test_several_outputs_are_answered_by_name(tmp_path):
    import keras
    import mlflow.keras
    import mlflow.pyfunc
    from mlflow.models import infer_signature

    from dlx.deploy.serve import save_serving_model

    numbers, flags = keras.Input((8,), name="numbers"), keras.Input((4,), name="flags")
    trunk = keras.layers.Dense(16)(keras.layers.Concatenate()([numbers, flags]))
    outputs = [
        keras.layers.Dense(3, name="label")(trunk),
        keras.layers.Dense(1, name="size")(trunk),
    ]
    model = keras.Model([numbers, flags], outputs)
    rows = {"numbers": np.ones((3, 8), "float32"), "flags": np.zeros((3, 4), "float32")}
    label, size = model.predict(rows, verbose=0)
    signature = infer_signature(rows, [label, size])
    mlflow.keras.save_model(model, str(tmp_path / "logged"), signature=signature)
    served = mlflow.pyfunc.load_model(str(save_serving_model(tmp_path / "logged", tmp_path)))
    got = served.predict(rows)
    assert sorted(got) == ["label", "size"]
    np.testing.assert_allclose(got["label"], label, atol=1e-6)
    np.testing.assert_allclose(got["size"], size, atol=1e-6)
