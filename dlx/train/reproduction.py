"""`dlx reproduce`: a recorded run trained again from its logged spec, its metrics compared."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dlx.errors import ExpectationError

if TYPE_CHECKING:
    from dlx.track.read import Store
    from dlx.train.progress import ProgressListener
    from dlx.train.runner import TrainResult


@dataclass
class Reproduction:
    """A run trained again from its logged spec, and how its final metrics compare."""

    original_run_id: str
    result: TrainResult
    rows: list[tuple[str, float | None, float | None]]
    """(metric, original value, reproduced value) for every metric either run has."""
    tolerance: float
    placement: tuple[str, str] = ("", "")
    """How the original and the reproduction ran (`strategy, N replicas, N workers`)."""
    data_changed: str | None = None
    """When the data's fingerprint differs from the original run's: what changed, in words."""

    @property
    def mismatches(self) -> list[str]:
        """The metrics the reproduction trained that differ from the original's, or that the
        original lacks. Metrics only the original has were logged to it by other commands
        (`dlx export`'s checks, a sweep's mean and spread of its seeds): shown, not compared."""
        return [
            name
            for name, before, after in self.rows
            if after is not None and (before is None or abs(after - before) > self.tolerance)
        ]


def reproduce(
    store: Store, original: Any, tolerance: float, progress: ProgressListener | None
) -> Reproduction:
    """Train a recorded run's logged spec again into the same store and compare every final
    metric (`dlx.api.reproduce` documents it).

    Raises:
        ExpectationError: a metric differs by more than `tolerance`; its `result` is the
            `Reproduction`, its `failures` the metrics that differ.
    """
    from dlx.track.tags import INTRA_OP_THREADS, REPLICAS, REPRODUCTION_OF, STRATEGY, WORKERS
    from dlx.train.runner import INTRA_OP_THREADS_VARIABLE
    from dlx.train.runner import train as run_training

    run_id = original.info.run_id
    loaded = store.logged_spec(original)
    if threads := original.data.tags.get(INTRA_OP_THREADS):  # read when TensorFlow starts
        os.environ.setdefault(INTRA_OP_THREADS_VARIABLE, threads)
    result = run_training(
        loaded, progress=progress, tracking_uri=store.uri, tags={REPRODUCTION_OF: run_id}
    )
    names = sorted(set(original.data.metrics) | set(result.metrics))
    rows = [(n, original.data.metrics.get(n), result.metrics.get(n)) for n in names]
    tags = original.data.tags
    placement = (
        _placement(
            tags.get(STRATEGY, "?"),
            int(tags.get(REPLICAS, 1)),
            int(tags.get(WORKERS, 1)),
        ),
        _placement(result.strategy, result.replicas, result.workers),
    )
    done = Reproduction(run_id, result, rows, tolerance, placement, _data_changed(tags, result))
    mismatches = done.mismatches
    if not mismatches:
        return done
    message = (
        f"not reproduced: {len(mismatches)} metric(s) differ by more than {tolerance:g}: "
        + ", ".join(sorted(mismatches))
    )
    before, after = placement
    if before != after:
        message += (
            f"\nnote: the original ran on {before}, the reproduction on {after}; another "
            "placement draws its random numbers (dropout) per replica and sums in another "
            "order (run it as the original ran, e.g. with the same TF_CONFIG, to compare "
            "like with like)"
        )
    raise ExpectationError(message, result=done, failures=mismatches)


def _data_changed(tags: dict[str, str], result: Any) -> str | None:
    """Whether the data read now is not the data the original run read, in words."""
    from dlx.track.tags import DATA_FINGERPRINT, DATA_FINGERPRINT_KIND

    before, after = tags.get(DATA_FINGERPRINT), result.data_fingerprint
    if before is None or before == after:
        return None
    text = f"the data changed since the run: fingerprint {before[:16]} != {after[:16]}"
    if tags.get(DATA_FINGERPRINT_KIND) == "files":
        text += (
            " (data.fingerprint: files compares the files' paths, sizes and modification "
            "times: files copied or checked out again count as changed even with the same "
            "bytes; data.fingerprint: content compares their bytes)"
        )
    return text


def _placement(strategy: str, replicas: int, workers: int) -> str:
    text = f"{strategy}, {replicas} replica{'s' if replicas != 1 else ''}"
    return text + (f", {workers} workers" if workers > 1 else "")
