"""`dlx data SPEC`: what a spec's data is, how workers would share it, and whether training
would wait for it.

The report reads the data as training does (`make_splits`), shows each split's files,
examples, classes and one batch's shapes, and measures two rates on this machine: examples
per second the input pipeline gives alone, and examples per second the spec's model trains on
batches already in memory. The lower one bounds training. Nothing is recorded: no run is
opened and no MLflow store is touched.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from dlx.data.stream import choose_sharding
from dlx.errors import SpecError
from dlx.spec import LoadedSpec

if TYPE_CHECKING:
    from dlx.train.preparation import Prepared
    from dlx.train.strategy import Placement

WARMUP_BATCHES = 2
"""Batches read (or trained on) before timing: opening files, tracing the step."""
MEASURED_BATCHES = 20
"""Batches timed for each rate."""


@dataclass
class SplitReport:
    """One split: its files (`None` when in memory), examples, classes and a batch's fields."""

    name: str
    files: int | None
    examples: int
    classes: int | None
    batch: dict[str, dict[str, Any]]
    """Each field of one batch (`x`, `y`, `x.name` for named inputs): `{"shape", "dtype"}`."""


@dataclass
class DataReport:
    """What `dlx data` shows (`as_dict` for `--format json`)."""

    spec: str
    batch_size: int
    cache: str | None
    """A streamed source's cache (`data.cache`, `auto` resolved); `None` for data in memory."""
    splits: list[SplitReport]
    backend: str
    """The Keras backend the spec trains on (`runtime.backend`)."""
    devices: list[str]
    """The devices one worker trains on in step (its placement's, as training chooses them)."""
    per_device_batch: int
    """The examples each device takes of a step's batch, across the workers' devices."""
    workers: int
    shard_policy: str | None
    """`file` or `data` for several workers (see `dlx.data.stream.Sharding`); `None` for one."""
    files_per_worker: str | None
    sharding: str
    input_examples_per_second: float
    train_examples_per_second: float
    verdict: str
    """`input-bound` (training would wait for the data) or `compute-bound`."""
    advice: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def data_report(loaded: LoadedSpec, workers: int = 1) -> DataReport:
    """Read a spec's data, describe its splits, and time its input pipeline and its model.

    Args:
        loaded: the spec (already validated).
        workers: the workers of a job to plan for (one replica each).

    Raises:
        SpecError: the data cannot be read, or does not fit the model, at its spec location.
    """
    from dlx.train.preparation import backend_of, prepare

    backend = backend_of(loaded)
    backend.configure_devices(loaded)
    with backend.process_settings(loaded):
        placement = backend.make_placement(loaded)
        prepared = prepare(loaded, "to describe its data", placement)
        try:
            return _report(prepared, workers, placement)
        except Exception as exc:  # a file past the ones `prepare` read, that cannot be decoded
            unreadable = prepared.splits.unreadable(exc)
            if unreadable is None:
                raise
            raise SpecError([loaded.document.problem(("data", "source"), unreadable)]) from None


def _report(prepared: Prepared, workers: int, placement: Placement) -> DataReport:
    loaded, task, model, splits = prepared.loaded, prepared.task, prepared.model, prepared.splits
    batch_size = loaded.spec.train.batch_size
    devices = _device_names(placement.strategy)
    model.jit_compile = prepared.jit.enabled

    files = _split_files(splits)
    classes = None if splits.class_names is None else len(splits.class_names)
    reports = [
        SplitReport(name, files[name], count, classes, _fields(next(iter(dataset))))
        for name, dataset, count in (
            ("train", splits.train, splits.num_train),
            ("validation", splits.validation, splits.num_validation),
            ("test", splits.test, splits.num_test),
        )
        if dataset is not None
    ]
    if workers > 1:
        sharding = choose_sharding(files["train"], workers, batch_size, replicas=workers)
        policy, per_worker, line = sharding.policy, sharding.files_per_worker, sharding.describe()
    else:
        policy, per_worker, line = None, None, "no sharding: it reads every example"

    epochs = math.ceil((WARMUP_BATCHES + MEASURED_BATCHES) / splits.steps_per_epoch) + 1
    input_rate = _input_rate(splits.epochs(0, epochs))
    train, _, _ = task.datasets(splits, 0, epochs)
    train_rate = _train_rate(model, train, task.fit_arguments(splits))
    verdict = "input-bound" if input_rate < train_rate else "compute-bound"
    return DataReport(
        spec=loaded.name,
        batch_size=batch_size,
        cache=splits.cache,
        splits=reports,
        backend=loaded.spec.runtime.backend,
        devices=devices,
        per_device_batch=batch_size // (len(devices) * workers),
        workers=workers,
        shard_policy=policy,
        files_per_worker=per_worker,
        sharding=line,
        input_examples_per_second=input_rate,
        train_examples_per_second=train_rate,
        verdict=verdict,
        advice=_advice(verdict, splits.cache, splits.stream is not None),
    )


def _device_names(strategy: Any) -> list[str]:
    """The devices a placement's strategy trains on: JAX's (`TFRT_CPU_0`, `cuda:0`) or
    `tf.distribute`'s (`/job:localhost/replica:0/task:0/device:GPU:0`, shortened)."""
    if hasattr(strategy, "devices"):  # on JAX (`dlx.train.on_jax.DeviceGroup`)
        return [str(device) for device in strategy.devices]
    try:
        names = list(strategy.extended.worker_devices)
    except RuntimeError:  # TensorFlow's default strategy: its default device
        import tensorflow as tf

        logical = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        names = [logical[0].name]
    return [name.rsplit("device:", 1)[-1] for name in names]


def _split_files(splits: Any) -> dict[str, int | None]:
    """The files each split reads; `None` for a split of data in memory."""
    counted = splits.file_counts or (None, None, None)
    return dict(zip(("train", "validation", "test"), counted, strict=True))


def _fields(batch: Any) -> dict[str, dict[str, Any]]:
    """Each tensor of a batch by name (`x`, `y`, `x.image`): its shape and dtype."""
    parts = dict(zip(("x", "y", "sample_weight"), batch, strict=False))
    if not isinstance(batch, tuple):
        parts = {"x": batch}
    fields = {}
    for name, value in parts.items():
        named = value.items() if isinstance(value, dict) else [("", value)]
        for key, tensor in named:
            fields[f"{name}.{key}" if key else name] = {
                "shape": list(tensor.shape),
                "dtype": _dtype_name(tensor.dtype),
            }
    return fields


def _dtype_name(dtype: Any) -> str:
    """A tensor's dtype as `tf.data` names it: NumPy's text arrays are `string`."""
    if getattr(dtype, "kind", None) in ("O", "U", "S"):
        return "string"
    return str(dtype.name)


def _examples_in(batch: Any) -> int:
    import keras

    return int(keras.tree.flatten(batch)[0].shape[0])


def _input_rate(dataset: Any) -> float:
    """Examples per second the input pipeline gives alone, after `WARMUP_BATCHES`."""
    batches = iter(dataset)
    for _ in range(WARMUP_BATCHES):
        next(batches)
    examples, started = 0, time.perf_counter()
    for _ in range(MEASURED_BATCHES):
        examples += _examples_in(next(batches))
    return examples / max(time.perf_counter() - started, 1e-9)


def _train_rate(model: Any, train: Any, fit_arguments: dict[str, Any]) -> float:
    """Examples per second the model trains on batches already in memory (the pipeline's
    cost taken out): in one `fit`, `WARMUP_BATCHES` steps that trace the step, then
    `MEASURED_BATCHES` timed from the end of the last warm-up step to the end of the epoch
    (each end waited for: JAX runs steps asynchronously). A second `fit` would time its own
    start too, as long as a light model's 20 steps."""
    import keras

    steps = WARMUP_BATCHES + MEASURED_BATCHES
    if hasattr(train, "take"):  # tf.data: the first batches, read whole into a cache first
        batches = train.take(steps).cache()
        sizes = [_examples_in(batch) for batch in batches]  # a cache read whole is kept
        batches = batches.repeat()
    else:  # batches of arrays, in memory already
        batches = train
        iterator = iter(train)
        sizes = [_examples_in(next(iterator)) for _ in range(steps)]

    class Clock(keras.callbacks.Callback):
        started = ended = 0.0

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            if batch == WARMUP_BATCHES - 1:
                _wait_for(logs)
                self.started = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            _wait_for(logs)
            self.ended = time.perf_counter()

    clock = Clock()
    model.fit(
        batches,
        steps_per_epoch=steps,
        epochs=1,
        verbose=0,
        shuffle=False,
        callbacks=[clock],
        **fit_arguments,
    )
    return sum(sizes[WARMUP_BATCHES:]) / max(clock.ended - clock.started, 1e-9)


def _wait_for(logs: Any) -> None:
    """Wait until a step's logs are computed (their values read back to the host)."""
    import keras
    import numpy as np

    for value in keras.tree.flatten(logs or {}):
        np.asarray(value)


def _advice(verdict: str, cache: str | None, streamed: bool) -> str:
    """What to change, for the side that bounds training."""
    if verdict == "compute-bound":
        return (
            "the model bounds training, not the data: a faster device, mixed precision "
            "(runtime.mixed_precision) or a smaller model speed it up; the input pipeline has "
            "room for a bigger model or larger inputs"
        )
    changes = []
    if cache == "none":
        changes.append(
            "cache the decoded examples (data.cache: memory, or {disk: path} when they do not "
            "fit in memory)"
        )
    if streamed:
        changes.append("decode smaller examples (a smaller image_size)")
        changes.append("give more CPU cores to reading (files are decoded in parallel)")
    changes.append("or train a bigger model per example: the device waits for data now")
    return "the input pipeline bounds training: " + "; ".join(changes)
