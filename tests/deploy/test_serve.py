"""`dlx serve`: MLflow's scoring server on a run's model, asked over real HTTP on 127.0.0.1."""

import json
import socket
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from dlx.track.logged_models import load_logged_model
from tests.in_process import dlx_in_process
from tests.train.processes import kill_group, start, wait_for

pytestmark = pytest.mark.slow


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


@pytest.fixture(scope="module")
def served(folder, uri, cnn):
    """A digits CNN run, served by `dlx serve` on a free port: (folder, uri, run id, port)."""
    run_id = cnn
    port = free_port()
    server = start("serve", run_id, "--port", str(port), cwd=folder)
    try:
        wait_for(lambda: ping(port) or server.poll() is not None, "dlx serve to answer /ping")
        assert server.poll() is None, server.stdout.read()
        yield folder, uri, run_id, port
    finally:
        kill_group(server)


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

    def test_concurrent_requests_are_all_answered(self, served):
        _, _, _, port = served
        body = json.dumps({"inputs": np.zeros((32, 8, 8, 1)).tolist()}).encode()
        with ThreadPoolExecutor(8) as pool:
            statuses = [status for status, _ in pool.map(lambda _: post(port, body), range(16))]
        assert statuses == [200] * 16

    def test_a_taken_port_is_exit_2(self, served):
        folder, _, run_id, port = served
        result = dlx_in_process("serve", run_id, "--port", str(port), cwd=folder)
        assert result.returncode == 2
        assert f"--port: cannot listen on 127.0.0.1:{port}" in result.stderr

    def test_named_inputs_as_in_the_spec(self, folder, two_inputs):
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
        finally:
            kill_group(server)

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
