"""Exporting a run's model as SavedModel, ONNX and LiteRT, each checked in its own runtime.

Every format is written by Keras 3's own `model.export` (`tf_saved_model`, `onnx` through
tf2onnx, `litert` through TensorFlow's converter) and then loaded back in the runtime that
serves it: TensorFlow's `serving_default` signature, an ONNX Runtime `InferenceSession`, the
LiteRT interpreter of `ai_edge_litert`. Its predictions on the run's own data are compared with
the Keras model's: the largest absolute difference, and for classifier outputs the share of
equal argmax. Formats are found in `FORMATS`, filled by `register_format`.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dlx.deploy.staging import staged_folder
from dlx.errors import DlxError, ExitStatus, UsageError
from dlx.tensorflow_import import native_stderr_silenced

PARITY_EXAMPLES = 1000
"""The most examples of the run's data that each export's predictions are compared on."""

CALIBRATION_EXAMPLES = 200
"""The training examples an int8 LiteRT model is calibrated on."""

REFERENCE_INPUTS = 256
"""Inputs of a kind's own (a GAN's latent vectors) that exports are checked on."""

QUANTIZATIONS = ("float16", "int8")

Predict = Callable[[dict[str, np.ndarray]], list[np.ndarray]]
"""Named inputs -> outputs in the order of the model's outputs."""


@dataclass(frozen=True)
class ExportFormat:
    """One format a model can be exported to.

    Attributes:
        name: the name `--format` takes, and the folder under the run's `export/` artifacts.
        suffix: the file's suffix (`""`: a folder).
        write: writes a Keras model to a path, with converter options (`quantize`), and says
            how (`keras`: Keras's own `model.export`).
        load: loads what `write` wrote into a `Predict` in the format's own runtime.
        carries_strings: whether string inputs (`text_vectorization`) survive the format.
    """

    name: str
    suffix: str
    write: Callable[..., str]
    load: Callable[[Path, list[str]], Predict]
    carries_strings: bool = False


FORMATS: dict[str, ExportFormat] = {}


def register_format(export_format: ExportFormat) -> ExportFormat:
    """Make a format known to `dlx export --format`."""
    FORMATS[export_format.name] = export_format
    return export_format


@dataclass
class Check:
    """How one exported model compares with the Keras model, and what it costs."""

    format: str
    model: str
    """Which of the run's models: `model`, or an autoencoder's `encoder`."""
    path: Path
    max_abs_diff: float
    argmax_agreement: float | None
    size_bytes: int
    latency_ms: dict[int, float]
    """Median milliseconds per call, by batch size (1 and 32)."""
    quantize: str | None = None
    via: str = "keras"
    """How the file was written: `keras` (`model.export`), or the converter used instead."""
    metric: tuple[str, float] | None = None
    """The quantized or float LiteRT model's own metric on the data (`accuracy` or `mse`)."""

    @property
    def label(self) -> str:
        text = self.format + (f"_{self.quantize}" if self.quantize else "")
        return text + (f"_{self.model}" if self.model != "model" else "")

    def within(self, tolerance: float) -> bool:
        """Whether the check passes; a quantized model is not held to the tolerance."""
        return self.quantize is not None or self.max_abs_diff <= tolerance


@dataclass
class Export:
    """The exports of one run (`dlx export`)."""

    run_id: str
    output: Path
    tolerance: float
    examples: int
    """How many examples the predictions were compared on."""
    checks: list[Check] = field(default_factory=list)
    keras_latency_ms: dict[int, float] = field(default_factory=dict)

    @property
    def failed(self) -> list[Check]:
        return [check for check in self.checks if not check.within(self.tolerance)]

    def summary(self) -> dict[str, Any]:
        """What `export/summary.json` holds."""
        return {
            "run_id": self.run_id,
            "tolerance": self.tolerance,
            "examples": self.examples,
            "keras_latency_ms": {str(k): v for k, v in self.keras_latency_ms.items()},
            "exports": [
                {
                    "format": c.format,
                    "model": c.model,
                    "quantize": c.quantize,
                    "file": c.path.name,
                    "via": c.via,
                    "size_bytes": c.size_bytes,
                    "max_abs_diff": c.max_abs_diff,
                    "argmax_agreement": c.argmax_agreement,
                    "latency_ms": {str(k): v for k, v in c.latency_ms.items()},
                    **({c.metric[0]: c.metric[1]} if c.metric else {}),
                }
                for c in self.checks
            ],
        }


class ExportMismatch(DlxError):
    """An export whose predictions differ from the Keras model's by more than the tolerance
    (exit status 1); the exports and their numbers are logged all the same."""

    exit_status = ExitStatus.FAILURE

    def __init__(self, message: str, *, result: Export) -> None:
        super().__init__(message)
        self.result = result


@dataclass
class RunModels:
    """What exporting needs of a run: its models, its data, and which outputs classify."""

    run_id: str
    models: dict[str, Any]
    """The Keras models by their logged name (`model`, and an autoencoder's `encoder`)."""
    inputs: Any
    """Examples to compare predictions on, as `model.predict` takes them."""
    labels: Any
    """Their targets (an array, or a mapping by output name), or `None`."""
    calibration: Any
    """Training examples for int8 calibration, as `model.predict` takes them."""
    classifier_outputs: set[str]


def parse_formats(text: str) -> list[str]:
    """`saved_model,onnx` -> the formats, checked.

    Raises:
        UsageError: a format that is not known.
    """
    from dlx.errors import did_you_mean

    names = [name.strip() for name in text.split(",") if name.strip()]
    for name in names:
        if name not in FORMATS:
            raise UsageError(
                f"--format: unknown format '{name}'{did_you_mean(name, FORMATS)}; "
                f"expected some of {', '.join(FORMATS)}"
            )
    if not names:
        raise UsageError(f"--format: no format given; expected some of {', '.join(FORMATS)}")
    return names


def export_run(
    run: RunModels,
    formats: list[str],
    output: Path,
    *,
    tolerance: float,
    quantize: str | None,
    log: Callable[[Path, str, dict[str, float]], None],
) -> Export:
    """Export a run's models to `formats` under `output`, check each, and log them.

    The files are written into a folder of their own beside `output` and renamed to it once
    all are written and logged (`dlx.deploy.staging`): `output` holds a whole export or none,
    an earlier export there is replaced whole, and an export that fails leaves nothing behind.

    Args:
        run: the run's models and data.
        formats: names in `FORMATS`.
        output: the folder the files are written to, `output/<format>/<model><suffix>`: a new
            or empty folder, or one an earlier export wrote.
        tolerance: the largest absolute difference a float32 export may have.
        quantize: `float16` or `int8`: also a quantized LiteRT model.
        log: `log(folder, artifact_path, metrics)`: logs a folder's files and metrics to the run.

    Returns:
        The `Export`, when every unquantized export is within `tolerance`.

    Raises:
        UsageError: a format that cannot carry the model's inputs (strings), `--quantize`
            without `litert`, or an `output` that holds other files.
        ExportMismatch: an export differs by more than `tolerance` (the export is in place).
    """
    if quantize is not None and "litert" not in formats:
        raise UsageError("--quantize applies to LiteRT models: add litert to --format")
    for name, model in run.models.items():
        strings = [i.name for i in model.inputs if "string" in str(i.dtype)]
        refused = [f for f in formats if strings and not FORMATS[f].carries_strings]
        if refused:
            carried = [f for f in FORMATS if FORMATS[f].carries_strings]
            raise UsageError(
                f"the run's {name} takes strings (input {', '.join(strings)}: "
                f"text_vectorization inside the model); {', '.join(refused)} carry numeric "
                f"tensors only (the string ops become custom ONNX nodes that ONNX Runtime "
                "cannot load, and TensorFlow ops that the LiteRT interpreter runs only with "
                f"the Flex delegate). Export it as {', '.join(carried)}, or move the text "
                "preprocessing out of the model"
            )
    done = Export(run.run_id, output, tolerance, _count(run.inputs))
    with staged_folder(output, replaceable=_is_export) as staging:
        _write_and_log(run, formats, staging, quantize, log, done)
    for check in done.checks:  # where the files are now that the folder is in place
        check.path = output / check.path.relative_to(staging)
    failed = done.failed
    if failed:
        lines = [
            f"{c.label}: max abs diff {c.max_abs_diff:.3g} > tolerance {tolerance:g}"
            + (
                f" (argmax agreement {c.argmax_agreement:.4f})"
                if c.argmax_agreement is not None
                else ""
            )
            for c in failed
        ]
        raise ExportMismatch(
            "export predictions differ from the Keras model's on "
            f"{done.examples} examples:\n" + "\n".join(lines),
            result=done,
        )
    return done


def _write_and_log(
    run: RunModels,
    formats: list[str],
    output: Path,
    quantize: str | None,
    log: Callable[[Path, str, dict[str, float]], None],
    done: Export,
) -> None:
    """Write and check each export of each model under `output`, adding its `Check` to
    `done`; then `summary.json`, and log them all to the run."""
    for name, model in run.models.items():
        model = float32_model(model)
        named = _named(model, run.inputs)
        expected = _as_list(model, model.predict(run.inputs, verbose=0))
        if name == "model":

            def predict_batch(x: dict[str, np.ndarray], m: Any = model) -> Any:
                return m.predict_on_batch(x if len(x) > 1 else next(iter(x.values())))

            done.keras_latency_ms = _latency(predict_batch, named)
        classifiers = [i for i, o in enumerate(model.output_names) if o in run.classifier_outputs]
        if name != "model":
            classifiers = []
        variants: list[tuple[str, str | None]] = [(f, None) for f in formats]
        if quantize is not None:
            variants.append(("litert", quantize))
        for format_name, quantization in variants:
            check = _export_one(
                model,
                name,
                FORMATS[format_name],
                output,
                named,
                expected,
                classifiers,
                quantization,
                run,
            )
            done.checks.append(check)
    for format_name in dict.fromkeys(c.format for c in done.checks):
        metrics: dict[str, float] = {}
        for check in done.checks:
            if check.format != format_name:
                continue
            metrics[f"export_{check.label}_max_abs_diff"] = check.max_abs_diff
            if check.argmax_agreement is not None:
                metrics[f"export_{check.label}_argmax_agreement"] = check.argmax_agreement
            if check.metric is not None:
                metrics[f"export_{check.label}_{check.metric[0]}"] = check.metric[1]
        log(output / format_name, f"export/{format_name}", metrics)
    summary = output / "summary.json"
    summary.write_text(json.dumps(done.summary(), indent=2) + "\n")
    log(summary, "export", {})


def _is_export(folder: Path) -> bool:
    """Whether a folder holds an earlier export and nothing else: its `summary.json` and
    folders named as formats."""
    names = {path.name for path in folder.iterdir()}
    return "summary.json" in names and names <= {"summary.json", *FORMATS}


def _export_one(
    model: Any,
    name: str,
    export_format: ExportFormat,
    output: Path,
    named: dict[str, np.ndarray],
    expected: list[np.ndarray],
    classifiers: list[int],
    quantize: str | None,
    run: RunModels,
) -> Check:
    folder = output / export_format.name
    folder.mkdir(parents=True, exist_ok=True)
    stem = name + (f"_{quantize}" if quantize else "")
    path = folder / f"{stem}{export_format.suffix}"
    options: dict[str, Any] = {}
    if quantize is not None:
        options["quantize"] = quantize
        options["calibration"] = _named(model, run.calibration)
    try:
        # The converters and runtimes print their progress and deprecation notes natively.
        with native_stderr_silenced(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            via = export_format.write(model, path, **options)
            predict = export_format.load(path, list(model.output_names))
            got = [np.asarray(g) for g in predict(named)]
    except UsageError:
        raise
    except ImportError as exc:  # `pip install .` leaves the converters and runtimes out
        raise DlxError(
            f"exporting as {export_format.name} needs {exc.name or 'a package'}, which is not "
            "installed: pip install 'dlx[export]'"
        ) from None
    except Exception as exc:  # a converter's or a runtime's failure, named
        message = " ".join(str(exc).split())[:600]
        raise DlxError(
            f"exporting the run's {name} as {export_format.name} failed: "
            f"{type(exc).__name__}: {message}"
        ) from exc
    diff = max(
        float(np.max(np.abs(g - e))) if e.size else 0.0 for g, e in zip(got, expected, strict=True)
    )
    agreement = None
    if classifiers:
        agreement = float(
            np.mean([np.mean(got[i].argmax(-1) == expected[i].argmax(-1)) for i in classifiers])
        )
    metric = None
    if export_format.name == "litert" and name == "model" and run.labels is not None:
        metric = _metric(model, got, run, classifiers)
    return Check(
        export_format.name,
        name,
        path,
        diff,
        agreement,
        _size(path),
        _latency(predict, named),
        quantize,
        via,
        metric,
    )


def _metric(
    model: Any, got: list[np.ndarray], run: RunModels, classifiers: list[int]
) -> tuple[str, float]:
    """The LiteRT model's own test metric: accuracy of its first classifier output, else the
    mean squared error of its first output."""
    index = classifiers[0] if classifiers else 0
    labels = run.labels
    if isinstance(labels, dict):
        labels = labels[model.output_names[index]]
    labels = np.asarray(labels)
    if classifiers:
        predicted = got[index].argmax(-1)
        if labels.ndim == predicted.ndim + 1:  # one-hot targets
            labels = labels.argmax(-1)
        return "accuracy", float(np.mean(predicted == labels.reshape(predicted.shape)))
    return "mse", float(np.mean((got[index] - labels.reshape(got[index].shape)) ** 2))


def float32_model(model: Any) -> Any:
    """`model` itself when it computes in float32; else a copy of it that does (a model
    trained under `runtime.mixed_precision` is exported as float32, its weights unchanged)."""
    import keras

    if all(layer.dtype_policy.name == "float32" for layer in _all_layers(model)):
        return model
    config = keras.saving.serialize_keras_object(model)
    text = json.dumps(config)
    for policy in ("mixed_float16", "mixed_bfloat16"):
        text = text.replace(f'"{policy}"', '"float32"')
    copy = keras.saving.deserialize_keras_object(json.loads(text))
    copy.set_weights(model.get_weights())
    return copy


def _all_layers(model: Any) -> Iterator[Any]:
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from _all_layers(layer)


def _named(model: Any, inputs: Any) -> dict[str, np.ndarray]:
    """Inputs as a mapping by the model's input names, which every format's signature uses."""
    names = [i.name for i in model.inputs]
    if isinstance(inputs, dict):
        return {n: np.asarray(inputs[n]) for n in names}
    if isinstance(inputs, (list, tuple)):
        return {n: np.asarray(x) for n, x in zip(names, inputs, strict=True)}
    return {names[0]: np.asarray(inputs)}


def _as_list(model: Any, outputs: Any) -> list[np.ndarray]:
    if isinstance(outputs, dict):
        return [np.asarray(outputs[n]) for n in model.output_names]
    if isinstance(outputs, (list, tuple)):
        return [np.asarray(o) for o in outputs]
    return [np.asarray(outputs)]


def _count(inputs: Any) -> int:
    first = next(iter(inputs.values())) if isinstance(inputs, dict) else inputs
    if isinstance(first, (list, tuple)):
        first = first[0]
    return len(first)


def _batch(named: dict[str, np.ndarray], size: int) -> dict[str, np.ndarray]:
    """The first `size` examples, repeated when there are fewer."""
    count = len(next(iter(named.values())))
    reps = math.ceil(size / count)
    return {
        k: np.concatenate([v] * reps)[:size] if reps > 1 else v[:size] for k, v in named.items()
    }


def _latency(predict: Callable[[dict[str, np.ndarray]], Any], named: dict[str, np.ndarray]):
    """Median milliseconds per call for batches of 1 and 32 (after two calls to warm up)."""
    found = {}
    for size, repeats in ((1, 30), (32, 10)):
        batch = _batch(named, size)
        for _ in range(2):
            predict(batch)
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            predict(batch)
            times.append((time.perf_counter() - started) * 1000)
        found[size] = float(np.median(times))
    return found


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _outputs_by_position(outputs: dict[str, Any], names: list[str]) -> list[np.ndarray]:
    """A signature's outputs (`output_0`, `output_1`, ...) in the order of the model's."""
    return [np.asarray(outputs[f"output_{i}"]) for i in range(len(names))]


def _write_saved_model(model: Any, path: Path) -> str:
    model.export(str(path), format="tf_saved_model", verbose=False)
    return "keras"


def _load_saved_model(path: Path, names: list[str]) -> Predict:
    import tensorflow as tf

    serving = tf.saved_model.load(str(path)).signatures["serving_default"]

    def predict(inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        outputs = serving(**{k: tf.constant(v) for k, v in inputs.items()})
        return _outputs_by_position({k: v.numpy() for k, v in outputs.items()}, names)

    return predict


def _write_onnx(model: Any, path: Path) -> str:
    """Keras's own ONNX export; where its graph asks for more than the model's inputs (Keras
    3.15 turns a `normalization` layer's adapted mean and variance into graph inputs), the
    model's SavedModel converted by tf2onnx instead, its variables frozen into constants."""
    import onnx

    model.export(str(path), format="onnx", verbose=False)
    wanted = {i.name for i in model.inputs}
    if {i.name for i in onnx.load(str(path)).graph.input} <= wanted:
        return "keras"
    import tensorflow as tf
    from tf2onnx import convert, tf_loader

    with tempfile.TemporaryDirectory(prefix="dlx-export-") as folder:
        model.export(folder, format="tf_saved_model", verbose=False)
        graph_def, inputs, outputs = tf_loader.from_saved_model(
            folder, None, None, signatures=["serving_default"]
        )
        with tf.device("/cpu:0"):
            convert.from_graph_def(
                graph_def, input_names=inputs, output_names=outputs, output_path=str(path)
            )
    return "tf2onnx on the SavedModel"


def _load_onnx(path: Path, names: list[str]) -> Predict:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    # tf2onnx names a graph converted from a SavedModel's tensors `<input>:0`.
    feeds = {i.name: i.name.split(":")[0] for i in session.get_inputs()}
    return lambda inputs: session.run(None, {k: inputs[v] for k, v in feeds.items()})


def _write_litert(
    model: Any, path: Path, quantize: str | None = None, calibration: Any = None
) -> str:
    import tensorflow as tf

    options: dict[str, Any] = {}
    if quantize is not None:
        options["optimizations"] = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        options["target_spec"] = {"supported_types": [tf.float16]}
    if quantize == "int8":
        count = len(next(iter(calibration.values())))

        def representative() -> Iterator[dict[str, np.ndarray]]:
            for index in range(min(count, CALIBRATION_EXAMPLES)):
                yield {k: v[index : index + 1].astype(np.float32) for k, v in calibration.items()}

        options["representative_dataset"] = representative
    model.export(str(path), format="litert", verbose=False, **options)
    return "keras"


def _load_litert(path: Path, names: list[str]) -> Predict:
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=str(path)).get_signature_runner()
    return lambda inputs: _outputs_by_position(runner(**inputs), names)


register_format(
    ExportFormat("saved_model", "", _write_saved_model, _load_saved_model, carries_strings=True)
)
register_format(ExportFormat("onnx", ".onnx", _write_onnx, _load_onnx))
register_format(ExportFormat("litert", ".tflite", _write_litert, _load_litert))
