"""One preparation: a spec turned into the pieces that training, the data report, export and
scoring work with.

- `read_splits`: the spec's data read into splits, a source's problem raised at its line.
- `prepare`: seeded and cleared, the splits read, the task of the spec's kind chosen, its model
  built and compiled (inside the strategy's scope, when there is one) and fitted to the data,
  and XLA chosen.
- `process_settings`: the process-wide settings a spec asks for (op determinism, the precision
  policy), restored as they were afterwards.
- `backend_of`: what differs on the spec's Keras backend (`dlx.train.on_tensorflow`,
  `dlx.train.on_jax`), Keras set to it in this process.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

from dlx.errors import SpecError
from dlx.spec import LoadedSpec

if TYPE_CHECKING:
    from dlx.data import SourceContext, Splits
    from dlx.spec.schema import Data
    from dlx.train.execution import JitCompile
    from dlx.train.strategy import Placement
    from dlx.train.tasks import Task


@dataclass
class Prepared:
    """A spec ready to fit: its task, its built and compiled model, its data, XLA chosen."""

    loaded: LoadedSpec
    task: Task
    model: Any
    splits: Splits
    jit: JitCompile


def read_splits(
    loaded: LoadedSpec,
    purpose: str,
    *,
    workers: int = 1,
    worker: int = 0,
    replicas: int = 1,
    feed: str = "tf.data",
) -> Splits:
    """A spec's `data` section read into batched splits.

    Args:
        loaded: the spec.
        purpose: what the data is for, in the error of a spec without data (`to train`).
        workers: the workers of the job that reads it; `worker` is this one.
        replicas: the replicas training in sync (devices of all the workers).
        feed: how data in memory reaches Keras: `tf.data`, or `arrays` (no TensorFlow).

    Raises:
        SpecError: the spec has no data, or its data cannot be read, at its spec location.
    """
    from dlx.data import make_splits

    data = has_data(loaded, purpose)
    with sources_located(loaded):
        return make_splits(
            data,
            context=source_context(loaded),
            batch_size=loaded.spec.train.batch_size,
            workers=workers,
            worker=worker,
            replicas=replicas,
            feed=feed,
        )


def source_context(loaded: LoadedSpec) -> SourceContext:
    """What a spec's sources are read with: its folder (for relative paths) and its seed."""
    from dlx.data import SourceContext

    return SourceContext(base_dir=loaded.base_dir, seed=loaded.spec.seed)


@contextlib.contextmanager
def sources_located(loaded: LoadedSpec) -> Iterator[None]:
    """Raise a source's problem (`SourceError`) as a `SpecError` at its place in the spec."""
    from dlx.data import SourceError

    try:
        yield
    except SourceError as exc:
        raise SpecError([loaded.document.problem(exc.path, exc.message)]) from None


_models_before = False  # whether this process has prepared a model already


def _clear_session(keras: Any) -> None:
    """Clear Keras's session, collecting garbage only when earlier models may have left some.

    A collection with TensorFlow and MLflow loaded costs about 0.3 s, to look at their
    modules' objects, which live as long as the process. So the first model of the `dlx`
    command's process (`dlx.proc.is_command`) moves every object alive then out of the
    collector's reach (`gc.freeze`), and each later model's collection (a sweep's next
    trial) takes milliseconds; a program that imports dlx keeps its objects as they were.
    """
    import gc

    from dlx import proc

    global _models_before
    if not _models_before and proc.is_command():
        gc.freeze()
    keras.utils.clear_session(free_memory=_models_before)
    _models_before = True


def prepare(loaded: LoadedSpec, purpose: str, placement: Placement | None = None) -> Prepared:
    """A spec's task and model built, compiled and fitted to its data.

    Clears Keras's session (layer names start afresh), seeds every generator from the spec's
    seed and sets its precision policy (inside `process_settings`, which restores it), reads
    the data, and builds the model inside the placement's strategy scope.

    Args:
        loaded: the spec.
        purpose: what it is prepared for, in the error of a spec without data (`to train`).
        placement: the strategy and cluster to build under; default: this process alone.

    Raises:
        SpecError: the data cannot be read, or does not fit the model (a file that cannot be
            decoded while preprocessing layers adapt is named).
    """
    backend = backend_of(loaded)
    import keras

    from dlx.backend import set_random_seed
    from dlx.train.execution import choose_jit_compile
    from dlx.train.kinds import task_for

    spec = loaded.spec
    # Clearing resets the precision policy and the seeds, so it goes first.
    _clear_session(keras)
    set_random_seed(spec.seed)
    if spec.runtime.mixed_precision:
        keras.mixed_precision.set_global_policy(spec.runtime.mixed_precision)
    workers, worker, replicas = 1, 0, 1
    if placement is not None:
        workers, worker = placement.cluster.workers, placement.cluster.index
        replicas = placement.replicas
    task = task_for(loaded)
    if (unsupported := task.unsupported_on(spec.runtime.backend)) is not None:
        raise loaded.error(*unsupported)
    splits = read_splits(
        loaded, purpose, workers=workers, worker=worker, replicas=replicas, feed=backend.FEED
    )
    scope = placement.strategy.scope() if placement is not None else contextlib.nullcontext()
    with scope:
        model = task.build(spec.runtime.jit_compile)
        if (unsupported := backend.unsupported(model)) is not None:
            raise loaded.error(("runtime", "backend"), unsupported)
        try:
            task.prepare(model, splits)
        except backend.unreadable_errors() as exc:
            # Adapting preprocessing read a file that cannot be decoded: before any run.
            if (unreadable := splits.unreadable(exc)) is None:
                raise
            raise SpecError([loaded.document.problem(("data",), unreadable)]) from None
    if splits.in_memory:
        backend.keep_tensorflow_out()
    in_sync = placement.strategy.num_replicas_in_sync if placement is not None else 1
    jit = choose_jit_compile(
        spec.runtime.jit_compile,
        model,
        spec.train.batch_size,
        splits.steps_per_epoch * spec.train.total_epochs,
        in_sync,
    )
    return Prepared(loaded, task, model, splits, jit)


def backend_of(loaded: LoadedSpec) -> ModuleType:
    """The module of what differs on the spec's backend (`runtime.backend`):
    `dlx.train.on_tensorflow` or `dlx.train.on_jax`, with Keras on that backend in this
    process.

    Raises:
        BackendMismatch: this process's Keras already runs the other backend.
    """
    from dlx.backend import use_backend

    use_backend(loaded.spec.runtime.backend)
    return backend_module(loaded.spec.runtime.backend)


def backend_module(backend: str) -> ModuleType:
    """`dlx.train.on_jax` for `jax`, else `dlx.train.on_tensorflow` (Keras left as it is)."""
    if backend == "jax":
        from dlx.train import on_jax

        return on_jax
    from dlx.train import on_tensorflow

    return on_tensorflow


def process_settings(loaded: LoadedSpec) -> contextlib.AbstractContextManager[None]:
    """Set the process-wide settings a spec asks for (op determinism, the precision policy, a
    distribution), and restore them afterwards."""
    return backend_of(loaded).process_settings(loaded)


def has_data(loaded: LoadedSpec, purpose: str) -> Data:
    """The spec's `data` section; a located error when it has none (`purpose`: `to train`)."""
    if loaded.spec.data is None:
        raise loaded.error((), f"a spec needs a data: section {purpose}")
    return loaded.spec.data
