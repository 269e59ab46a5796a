"""A run's logged models and the data its exports are checked on: `dlx export` of a run."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from dlx.deploy.export import (
    CALIBRATION_EXAMPLES,
    PARITY_EXAMPLES,
    QUANTIZATIONS,
    REFERENCE_INPUTS,
    Export,
    RunModels,
    export_run,
    parse_formats,
)
from dlx.errors import UsageError
from dlx.spec import LoadedSpec


def export_logged_run(
    store: Any,
    run: Any,
    formats: list[str] | tuple[str, ...],
    *,
    output: str | Path | None,
    tolerance: float,
    quantize: str | None,
) -> Export:
    """Export a run's logged models to each format, check each, and log them to the run
    (`dlx.api.export` documents it)."""
    from dlx.backend import use_backend

    names = parse_formats(",".join(formats))
    if quantize is not None and quantize not in QUANTIZATIONS:
        raise UsageError(
            f"--quantize: expected one of {', '.join(QUANTIZATIONS)}. Received: {quantize!r}"
        )
    run_id = run.info.run_id
    # The exporters are TensorFlow's: a run trained on JAX is loaded under TensorFlow (its
    # `.keras` model is the same on either backend).
    use_backend("tensorflow")
    models = run_models(store.uri, run_id, store.logged_spec(run))
    folder = Path(output) if output is not None else default_output(run_id)
    return export_run(
        models,
        names,
        folder,
        tolerance=tolerance,
        quantize=quantize,
        log=run_logger(store.uri, run_id),
    )


def run_models(tracking_uri: str, run_id: str, loaded: LoadedSpec) -> RunModels:
    """A run's logged models, and the data `dlx export` checks them on.

    Args:
        tracking_uri: the run's store.
        run_id: the run's id.
        loaded: the run's logged spec (`LoadedSpec`), its paths resolved.

    Raises:
        UsageError: the run logged no model.
        SpecError: the run's data cannot be read.
    """
    from dlx.track.logged_models import load_logged_model
    from dlx.train.kinds import task_for
    from dlx.train.preparation import read_splits

    task = task_for(loaded)
    models = {name: load_logged_model(tracking_uri, run_id, name) for name in task.logged_models}
    own = task.reference_inputs(REFERENCE_INPUTS)
    if own is not None:
        return RunModels(run_id, models, own, None, own, set())
    splits = read_splits(loaded, "to check an export on")
    x, y = _examples(splits, PARITY_EXAMPLES)
    calibration, _ = (
        (_take(splits.train_arrays[0], CALIBRATION_EXAMPLES), None)
        if splits.train_arrays is not None
        else _examples(splits, CALIBRATION_EXAMPLES, train=True)
    )
    output_names = list(models["model"].output_names)
    return RunModels(
        run_id,
        models,
        x,
        task.reference_targets(x, y),
        calibration,
        _classifier_outputs(loaded.spec.train.loss, output_names),
    )


def _examples(splits: Any, count: int, *, train: bool = False) -> tuple[Any, Any]:
    """Up to `count` examples `(x, y)` of the test split, else validation, else training."""
    import keras

    arrays = None if train else (splits.test_arrays or splits.validation_arrays)
    arrays = arrays or splits.train_arrays
    if arrays is not None and not train:
        x, y = arrays
        return _take(x, count), None if y is None else _take(y, count)
    dataset = splits.train if train else (splits.test or splits.validation or splits.train)
    batches = []
    for batch in dataset:
        batches.append(batch)
        if sum(len(keras.tree.flatten(b[0])[0]) for b in batches) >= count:
            break
    joined = keras.tree.map_structure(lambda *parts: np.concatenate(parts), *batches)
    return _take(joined[0], count), _take(joined[1], count)


def _take(values: Any, count: int) -> Any:
    import keras

    return keras.tree.map_structure(lambda v: np.asarray(v)[:count], values)


def _classifier_outputs(loss: Any, output_names: list[str]) -> set[str]:
    """The outputs whose loss is a categorical cross-entropy: their argmax is a class."""

    def name(value: Any) -> str:
        return str(next(iter(value)) if isinstance(value, dict) else value or "")

    if isinstance(loss, dict) and set(loss) <= set(output_names) and loss:
        by_output = {o: name(v) for o, v in loss.items()}
    else:
        by_output = dict.fromkeys(output_names, name(loss))
    return {o for o, n in by_output.items() if "categorical" in n.lower()}


def run_logger(tracking_uri: str, run_id: str) -> Callable[[Path, str, dict[str, float]], None]:
    """`log(local, artifact_path, metrics)`: logs a file or a folder's files and metrics to a
    run, whatever its status (which stays as it is)."""
    from mlflow.entities import Metric

    from dlx.track.store import open_for_writing

    client = open_for_writing(tracking_uri)

    def log(local: Path, artifact_path: str, metrics: dict[str, float]) -> None:
        if local.is_dir():
            client.log_artifacts(run_id, str(local), artifact_path)
        else:
            client.log_artifact(run_id, str(local), artifact_path)
        now = int(time.time() * 1000)
        client.log_batch(run_id, metrics=[Metric(k, v, now, 0) for k, v in metrics.items()])

    return log


def default_output(run_id: str) -> Path:
    """Where `dlx export` writes when `--output` is not given: `./export-<run id>`."""
    return Path(f"export-{run_id[:8]}")
