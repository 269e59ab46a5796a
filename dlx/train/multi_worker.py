"""Several workers, one job: the cluster from `TF_CONFIG`, and Keras 3 `fit` made to work on it.

Keras 3.15's TensorFlow trainer fails under `MultiWorkerMirroredStrategy` (keras-team/keras
#20585), in two places and nowhere else:

1. `TensorFlowTrainer._maybe_symbolic_build` builds the model from the first batch by calling
   `strategy.reduce("MEAN", batch)` on the whole `(x, y)` structure; across workers that is a
   collective over a tuple, which TensorFlow refuses (`PerReplica` cannot become a tensor).
   A batch is only needed there for its shapes, so one replica's part of it does.
2. `reduce_per_replica` reduces the step's logs with `strategy.reduce("MEAN", v, axis=0)`
   when several workers run; the logs are scalars, which have no axis 0. The mean over
   replicas (`axis=None`) is what the single-worker path computes, and what is meant.

Why patch these two functions instead of writing a training loop of dlx's own: everything else
of `fit` works across workers (distributed datasets, gradient all-reduce, callbacks,
`BackupAndRestore`, validation, custom `train_step`s such as dlx's GAN), and a loop of our own
would have to re-implement all of it and drift from what users get on one machine. The patch
is small, applied only when a job really has several workers, and refuses to apply when the
Keras code it replaces is not, to the byte, the code it was written against (see
`KNOWN_SOURCES`): a new Keras fails loudly here and in `tests/train/test_multi_worker.py`
instead of training wrongly. When Keras fixes #20585, delete this patch.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
from dataclasses import dataclass
from typing import Any

from dlx.errors import DlxError, UsageError

KNOWN_SOURCES = {
    "TensorFlowTrainer._maybe_symbolic_build": "92a504f5eba9",
    "reduce_per_replica": "2e7d54b1e6ed",
}
"""The sha256 (first 12 hex digits) of the Keras functions the patch replaces or wraps."""


@dataclass(frozen=True)
class Cluster:
    """This process's place in a multi-worker job, read from `TF_CONFIG`.

    Attributes:
        workers: how many worker tasks the cluster has (a `chief` task counts as one).
        index: this task's position among them; 0 is the chief.
        is_chief: whether this task writes the job's run (the `chief` task, else worker 0).
        coordinator: the chief's address (`host:port`), where a JAX job's processes meet.
    """

    workers: int = 1
    index: int = 0
    coordinator: str = ""

    @property
    def is_chief(self) -> bool:
        return self.index == 0

    @classmethod
    def from_environment(cls) -> Cluster:
        """The cluster `TF_CONFIG` describes; one worker when it is unset.

        Raises:
            UsageError: `TF_CONFIG` is not valid JSON or names no task of its cluster.
        """
        text = os.environ.get("TF_CONFIG", "")
        if not text.strip():
            return cls()
        try:
            config = json.loads(text)
            cluster = config.get("cluster", {})
            task = config.get("task", {})
            chiefs = len(cluster.get("chief", []))
            workers = chiefs + len(cluster.get("worker", []))
            kind, index = task.get("type", "worker"), int(task.get("index", 0))
        except (json.JSONDecodeError, AttributeError, TypeError, ValueError) as exc:
            raise UsageError(f"TF_CONFIG is not valid: {exc}") from None
        if workers <= 1:
            return cls()
        if kind not in ("chief", "worker") or not 0 <= index < len(cluster.get(kind, [])):
            raise UsageError(
                f"TF_CONFIG: task {kind}:{index} is not in its cluster "
                f"({', '.join(f'{k}: {len(v)}' for k, v in cluster.items())})"
            )
        first = (cluster.get("chief") or cluster.get("worker"))[0]
        return cls(
            workers=workers,
            index=index if kind == "chief" else chiefs + index,
            coordinator=str(first),
        )


def source_digest(function: Any) -> str:
    return hashlib.sha256(inspect.getsource(function).encode()).hexdigest()[:12]


def patch_keras_fit() -> None:
    """Make Keras 3 `fit`, `evaluate` and `predict` work under `MultiWorkerMirroredStrategy`.

    Idempotent. See the module's docstring for what is patched and why.

    Raises:
        DlxError: this Keras's code differs from the code the patch was written against.
    """
    import keras
    import tensorflow as tf
    from keras.src import tree
    from keras.src.backend.tensorflow import trainer

    trainer_class = trainer.TensorFlowTrainer
    if getattr(trainer_class, "_dlx_multi_worker_patch", False):
        return
    originals = {
        "TensorFlowTrainer._maybe_symbolic_build": trainer_class._maybe_symbolic_build,
        "reduce_per_replica": trainer.reduce_per_replica,
    }
    changed = [
        name
        for name, function in originals.items()
        if source_digest(function) != KNOWN_SOURCES[name]
    ]
    if changed:
        raise DlxError(
            f"multi_worker_mirrored: Keras {keras.__version__} changed {', '.join(changed)}, "
            "which dlx patches to work around keras-team/keras#20585 (written against Keras "
            "3.15); check whether Keras fixed the issue and update dlx/train/multi_worker.py"
        )
    reduce_per_replica = trainer.reduce_per_replica

    def maybe_symbolic_build(self: Any, iterator: Any = None, data_batch: Any = None) -> None:
        if self._distribute_strategy is None:
            return
        strategy = self.distribute_strategy
        if iterator is not None:
            for _, _, batches in iterator:
                data_batch = tree.map_structure(
                    lambda value: (
                        strategy.experimental_local_results(value)[0]
                        if isinstance(value, tf.distribute.DistributedValues)
                        else value
                    ),
                    next(batches),
                )
                break
        with strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    def reduce_logs(values: Any, strategy: Any, reduction: str) -> Any:
        if reduction in ("auto", "mean") and trainer._collective_all_reduce_multi_worker(strategy):
            return tree.map_structure(lambda v: strategy.reduce("MEAN", v, axis=None), values)
        return reduce_per_replica(values, strategy, reduction)

    trainer_class._maybe_symbolic_build = maybe_symbolic_build
    trainer.reduce_per_replica = reduce_logs
    trainer_class._dlx_multi_worker_patch = True
