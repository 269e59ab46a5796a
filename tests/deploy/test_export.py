"""`dlx export`: each kind's logged models written as SavedModel, ONNX and LiteRT, each checked
in its own runtime against the Keras model, and logged to the run."""

import json
import sys
from pathlib import Path

import pytest

from dlx import api
from dlx.deploy.export import RunModels, export_run
from dlx.errors import DlxError, UsageError
from dlx.track.read import open_store
from tests.conftest import ROOT
from tests.deploy.conftest import train
from tests.in_process import dlx_in_process
from tests.train.test_resume import store

pytestmark = pytest.mark.slow

SPECS = ROOT / "specs"

QUIET = {"tolerance": 1e-5, "quantize": None, "log": lambda local, artifact_path, metrics: None}
"""`export_run`'s options for a run outside a store: nothing is logged."""


class TestSharedRuns:
    """The tests of the shared runs (tests/deploy/conftest.py), here and in the other module's
    class of this name: together in one worker, which trains each once (tests/conftest.py)."""

    def test_cli_exports_a_cnn_to_three_formats_within_1e_5_and_int8_with_its_accuracy(
        self, folder, cnn
    ):
        result = dlx_in_process(
            "export", cnn[:10], "--output", "out", "--quantize", "int8", cwd=folder
        )
        assert result.returncode == 0, result.stderr
        for line in ("saved_model", "onnx", "litert", "litert_int8", "keras"):
            assert line in result.stdout
        run = store(folder).get_run(cnn)
        metrics = run.data.metrics
        for name in ("saved_model", "onnx", "litert"):
            assert metrics[f"export_{name}_max_abs_diff"] <= 1e-5
            assert metrics[f"export_{name}_argmax_agreement"] == 1.0
        assert metrics["export_litert_accuracy"] == pytest.approx(
            metrics["test_accuracy"], abs=0.01
        )
        assert 0.0 <= metrics["export_litert_int8_accuracy"] <= 1.0
        assert "export_litert_int8_max_abs_diff" in metrics
        assert run.info.status == "FINISHED"  # logging the exports left the run as it was
        artifacts = store(folder).list_artifacts(cnn, "export")
        names = {Path(a.path).name for a in artifacts}
        assert {"saved_model", "onnx", "litert", "summary.json"} <= names
        files = {Path(a.path).name for a in store(folder).list_artifacts(cnn, "export/litert")}
        assert files == {"model.tflite", "model_int8.tflite"}
        assert (folder / "out" / "onnx" / "model.onnx").stat().st_size > 10_000
        summary = json.loads((folder / "out" / "summary.json").read_text())
        assert summary["examples"] == 180  # the digits' test split
        sizes = {(e["format"], e["quantize"]): e["size_bytes"] for e in summary["exports"]}
        assert sizes[("litert", "int8")] < sizes[("litert", None)] / 2
        assert all(set(e["latency_ms"]) == {"1", "32"} for e in summary["exports"])
        assert {e["via"] for e in summary["exports"]} == {"keras"}

    def test_an_export_over_the_tolerance_exits_1_with_the_numbers_and_is_logged(self, folder, cnn):
        result = dlx_in_process(
            "export",
            cnn,
            "--format",
            "onnx",
            "--tolerance",
            "1e-12",
            "--output",
            "tight",
            cwd=folder,
        )
        assert result.returncode == 1
        assert "error: export predictions differ from the Keras model's on 180 examples" in (
            result.stderr
        )
        assert "onnx: max abs diff" in result.stderr and "> tolerance 1e-12" in result.stderr
        assert "onnx" in result.stdout  # the table is shown all the same

    def test_unknown_format_and_quantize_without_litert_exit_2(self, folder, cnn):
        result = dlx_in_process("export", cnn, "--format", "onx", cwd=folder)
        assert result.returncode == 2
        assert "unknown format 'onx' (did you mean 'onnx'?)" in result.stderr
        with pytest.raises(UsageError, match="add litert to --format"):
            api.export(cnn, ["onnx"], quantize="int8", tracking_uri=f"sqlite:///{folder}/mlflow.db")

    def test_float16_litert_halves_the_file(self, folder, uri, cnn, tmp_path):
        done = api.export(
            cnn, ["litert"], output=tmp_path / "export", quantize="float16", tracking_uri=uri
        )
        plain, half = done.checks
        assert half.quantize == "float16" and half.size_bytes < plain.size_bytes * 0.6
        assert half.max_abs_diff < 1e-2 and half.argmax_agreement >= 0.98

    def test_two_named_inputs(self, folder, uri, two_inputs, tmp_path, monkeypatch):
        monkeypatch.chdir(folder)
        run_id = two_inputs
        done = api.export(run_id, output=tmp_path / "export", tracking_uri=uri)
        assert [c.format for c in done.checks] == ["saved_model", "onnx", "litert"]
        assert all(c.max_abs_diff <= 1e-5 and c.argmax_agreement == 1.0 for c in done.checks)
        assert done.checks[2].metric[0] == "accuracy"

    def test_string_inputs_export_as_saved_model_and_are_refused_by_onnx_and_litert(
        self, folder, uri, reviews, tmp_path, monkeypatch
    ):
        monkeypatch.chdir(folder)
        run_id = reviews
        with pytest.raises(UsageError) as caught:
            api.export(
                run_id,
                ["saved_model", "onnx", "litert"],
                output=tmp_path / "export",
                tracking_uri=uri,
            )
        assert "takes strings" in str(caught.value)
        assert "onnx, litert carry numeric tensors only (" in str(caught.value)
        assert "Export it as saved_model" in str(caught.value)
        done = api.export(run_id, ["saved_model"], output=tmp_path / "export", tracking_uri=uri)
        assert done.checks[0].max_abs_diff <= 1e-5 and done.checks[0].argmax_agreement == 1.0

    def test_a_run_still_running_is_said_to_be_running(self, folder, uri, cnn):
        """A run as `dlx train` leaves it until its training ends: RUNNING, its spec logged,
        no model yet."""
        client = store(folder)
        running = client.create_run(client.get_run(cnn).info.experiment_id).info.run_id
        client.log_text(running, open_store(uri).spec_text(cnn), "spec.yaml")
        result = dlx_in_process("export", running, "--output", "running", cwd=folder)
        assert result.returncode == 2
        assert result.stderr == (
            f"error: the run {running} is still running and has logged no model 'model' yet: "
            "wait until it finishes; if its process was killed, resume it (dlx train --resume "
            f"{running}) and use it once it has finished\n"
        )
        assert not (folder / "running").exists()


def tiny_run() -> RunModels:
    """A one-layer model and its inputs: what exporting needs, in a second."""
    import keras
    import numpy as np

    inputs = keras.Input((4,), name="x")
    model = keras.Model(inputs, keras.layers.Dense(2, name="y")(inputs))
    x = np.random.default_rng(0).normal(size=(16, 4)).astype("float32")
    return RunModels("run", {"model": model}, x, None, x, set())


def test_two_exports_to_one_folder_at_once_write_apart_and_both_succeed(tmp_path):
    """The first export, half-way (its ONNX file written and logged, its summary not yet),
    waits while a second export to the same folder runs to its end."""
    run, output, second = tiny_run(), tmp_path / "export", []

    def log_then_export_again(local: Path, artifact_path: str, metrics: dict) -> None:
        assert output not in local.parents  # each export writes in a folder of its own
        if not second:
            second.append(export_run(run, ["onnx"], output, **QUIET))
            assert json.loads((output / "summary.json").read_text())["exports"][0]["format"]

    first = export_run(run, ["onnx"], output, **{**QUIET, "log": log_then_export_again})
    assert [check.path for check in first.checks + second[0].checks] == [
        output / "onnx" / "model.onnx"
    ] * 2
    assert (output / "onnx" / "model.onnx").is_file()
    assert [path.name for path in tmp_path.iterdir()] == ["export"]  # no partial folder left


def test_a_failed_export_leaves_nothing_behind(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if dlx[export] were not installed
    with pytest.raises(DlxError, match="needs onnxruntime, which is not installed"):
        export_run(tiny_run(), ["saved_model", "onnx"], tmp_path / "made" / "export", **QUIET)
    assert list(tmp_path.iterdir()) == []  # not the SavedModel written first, nor the parent


def test_normalization_inside_the_model_is_exported_with_it(uri, tmp_path):
    run_id = train(SPECS / "iris_mlp.yaml", uri)
    done = api.export(run_id, output=tmp_path / "export", tracking_uri=uri)
    assert all(c.max_abs_diff <= 1e-5 and c.argmax_agreement == 1.0 for c in done.checks)
    # Keras's own ONNX export leaves the layer's statistics as graph inputs.
    assert [c.via for c in done.checks] == ["keras", "tf2onnx on the SavedModel", "keras"]


def test_two_outputs_keep_their_order_in_every_format(tmp_path):
    """Several outputs: a model with a class and a size, its outputs compared one by one in
    each runtime (a trained one: tests/test_multi_output_example.py)."""
    import keras
    import numpy as np

    numbers, flags = keras.Input((8,), name="numbers"), keras.Input((4,), name="flags")
    trunk = keras.layers.Dense(16, activation="relu")(keras.layers.Concatenate()([numbers, flags]))
    label = keras.layers.Dense(3, activation="softmax", name="label")(trunk)
    size = keras.layers.Dense(1, name="size")(trunk)
    model = keras.Model({"numbers": numbers, "flags": flags}, [label, size])
    rng = np.random.default_rng(0)
    x = {"numbers": rng.normal(size=(64, 8)), "flags": rng.normal(size=(64, 4))}
    x = {k: v.astype("float32") for k, v in x.items()}
    logged = []
    run = RunModels("run", {"model": model}, x, None, x, {"label"})
    done = export_run(
        run,
        ["saved_model", "onnx", "litert"],
        tmp_path / "export",
        tolerance=1e-5,
        quantize=None,
        log=lambda local, path, metrics: logged.append((path, metrics)),
    )
    assert all(c.max_abs_diff <= 1e-5 and c.argmax_agreement == 1.0 for c in done.checks)
    assert logged[0] == (
        "export/saved_model",
        {
            "export_saved_model_max_abs_diff": done.checks[0].max_abs_diff,
            "export_saved_model_argmax_agreement": 1.0,
        },
    )
    assert logged[-1] == ("export", {})  # summary.json


def test_autoencoder_exports_its_model_and_its_encoder(folder, uri, tmp_path):
    run_id = train(SPECS / "digits_autoencoder.yaml", uri)
    done = api.export(run_id, ["onnx", "litert"], output=tmp_path / "export", tracking_uri=uri)
    assert [(c.format, c.model) for c in done.checks] == [
        ("onnx", "model"),
        ("litert", "model"),
        ("onnx", "encoder"),
        ("litert", "encoder"),
    ]
    assert all(c.max_abs_diff <= 1e-5 and c.argmax_agreement is None for c in done.checks)
    assert done.checks[1].metric[0] == "mse"
    metrics = store(folder).get_run(run_id).data.metrics
    assert "export_onnx_encoder_max_abs_diff" in metrics
    assert (tmp_path / "export" / "litert" / "encoder.tflite").is_file()


def test_gan_exports_its_generator(uri, tmp_path):
    run_id = train(SPECS / "digits_gan.yaml", uri)
    done = api.export(run_id, ["saved_model", "onnx"], output=tmp_path / "export", tracking_uri=uri)
    assert [c.model for c in done.checks] == ["model", "model"]
    assert all(c.max_abs_diff <= 1e-5 for c in done.checks)
    assert done.examples == 256  # latent vectors drawn from the spec's seed


def test_a_mixed_precision_model_is_exported_as_float32(uri, tmp_path):
    run_id = train(
        SPECS / "digits_cnn.yaml",
        uri,
        ["runtime.mixed_precision=mixed_bfloat16", "runtime.jit_compile=false"],
    )
    done = api.export(
        run_id, ["onnx"], output=tmp_path / "export", tolerance=1e-2, tracking_uri=uri
    )
    import onnx

    graph = onnx.load(str(tmp_path / "export" / "onnx" / "model.onnx")).graph
    assert {t.type.tensor_type.elem_type for t in [*graph.input, *graph.output]} == {
        onnx.TensorProto.FLOAT
    }
    assert done.checks[0].argmax_agreement >= 0.98
