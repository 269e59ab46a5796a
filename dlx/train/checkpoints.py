"""A run's checkpoints, for `dlx train --resume`: a folder tied to the run, kept until it ends.

Every run saves its state at the end of each epoch through Keras's `BackupAndRestore`
(weights, optimizer state, and the layers' random state: the seed generators behind dropout
and noise, which Keras's weights files leave out; without them a resumed run would draw other
dropout masks and end elsewhere), and what Keras's stateful callbacks among the spec's hold
between epochs (early stopping's patience count, best value and best weights; a plateau's
wait and cooldown; a checkpoint's best value), which their `on_train_begin` would otherwise
reset: a resumed run stops where the uninterrupted one does. One sub-folder per stage (a
fine-tuning stage recompiles, so its state differs) holds `epoch-<N>/`, the state after N
epochs. Each is written whole into `epoch-<N>.partial/` and then renamed, so a kill at any
instant (`kill -9` in the middle of writing the weights) leaves the previous epoch's folder
intact and no half-written one to restore. A stage that ended is marked `done` with the epoch
it ended at. Next to them, `metrics.jsonl` and `artifacts/` are the run's outbox
(`dlx.track.outbox`).
The folder is deleted when the run ends FINISHED; it stays after a failure, an interrupt or a
kill, for `--resume`.

In a multi-worker job every worker saves (saving is part of the job's lockstep), but only the
chief into this folder; the others save into a scratch folder of their own, and all of them
restore from the chief's.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dlx.errors import DlxError
from dlx.proc import signals

WEIGHTS = "model.weights.h5"
SEEDS = "seeds.npz"
CALLBACKS = "callbacks.json"
CALLBACK_ARRAYS = "callbacks.npz"


def saved_epochs(folder: Path) -> list[int]:
    """The epochs whose state was written whole into `folder` (a stage's), newest first."""
    found = []
    for path in folder.glob("epoch-*"):
        number = path.name.removeprefix("epoch-")
        if number.isdigit():
            found.append(int(number))
    return sorted(found, reverse=True)


def write_atomically(path: Path, text: str) -> None:
    """Write a small file so that a kill leaves the old one or the new one, never half."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)


def checkpoint_folder(tracking_uri: str, run_id: str) -> Path:
    """Where a new run keeps its checkpoints: `dlx-checkpoints/<run id>` next to a sqlite
    store's file, else in the working directory (recorded in the run's `dlx.checkpoints` tag)."""
    from dlx.track.store import sqlite_file

    database = sqlite_file(tracking_uri)
    root = database.parent if database is not None else Path.cwd()
    return (root / "dlx-checkpoints" / run_id).resolve()


class RunCheckpoints:
    """The checkpoints of one run.

    Args:
        folder: the run's checkpoint folder; a worker of a new job has none (it has nothing to
            restore from).
        writer: whether this process writes it (the chief); other workers restore from it
            and save into a scratch folder of their own.
    """

    def __init__(self, folder: Path | None, *, writer: bool = True):
        self.writer = writer
        self._scratch = None if writer else Path(tempfile.mkdtemp(prefix="dlx-worker-checkpoints-"))
        folder = folder or self._scratch
        if folder is None:
            raise ValueError("the chief's checkpoints need the run's folder")
        self.folder = folder
        if writer:  # at once: a run killed in its first epoch can be resumed (from the start)
            self.folder.mkdir(parents=True, exist_ok=True)

    def callback(self, stage: int, kept: Sequence[Any] = ()) -> Any:
        """The `BackupAndRestore` of a stage, restoring its last saved epoch if there is one,
        with the state of the callbacks `kept` (the spec's, which run before it)."""
        folder = self._stage(stage)
        if self._scratch is not None:
            scratch = self._scratch / folder.name
            if folder.exists() and not scratch.exists():
                shutil.copytree(folder, scratch)
            folder = scratch
        return _backup_class()(str(folder), kept)

    def restored_epoch(self, stage: int) -> int | None:
        """The epoch a stage resumes at (the number of epochs saved), or None: from the start."""
        epochs = saved_epochs(self._stage(stage))
        return epochs[0] if epochs else None

    def done_epoch(self, stage: int) -> int | None:
        """The epoch a stage that ended ended at (its next stage starts there), or None."""
        try:
            return int(json.loads((self._stage(stage) / "done.json").read_text())["epoch"])
        except (OSError, ValueError, KeyError):
            return None

    def mark_done(self, stage: int, epoch: int) -> None:
        if self.writer:
            path = self._stage(stage) / "done.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(path, json.dumps({"epoch": epoch}))

    def remove(self) -> None:
        """Delete the checkpoints (the run ended FINISHED) and this worker's scratch folder."""
        if self.writer:
            shutil.rmtree(self.folder, ignore_errors=True)
            with contextlib.suppress(OSError):
                self.folder.parent.rmdir()  # `dlx-checkpoints`, when no other run has one
        self.close()

    def close(self) -> None:
        """Delete this worker's scratch folder (the chief's checkpoints stay)."""
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)

    def _stage(self, stage: int) -> Path:
        return self.folder / f"stage-{stage}"


_MARGIN_BYTES = 1 << 20


def _room_for(root: Path, model: Any) -> None:
    """Raise ENOSPC before a checkpoint is begun that the disk has no room for.

    A write that runs out of space half-way inside h5py leaves objects that can crash the
    interpreter when they are collected; checking first ends the run with a clean error. The
    size is the last checkpoint's, or the model's and its optimizer's variables.
    """
    import errno

    saved = saved_epochs(root)
    if saved:
        needed = sum(f.stat().st_size for f in (root / f"epoch-{saved[0]}").iterdir())
    else:
        import math

        import numpy as np

        variables = [*model.weights, *getattr(model.optimizer, "variables", [])]
        needed = sum(math.prod(v.shape) * np.dtype(v.dtype).itemsize for v in variables)
    needed += _MARGIN_BYTES
    root.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(root).free
    if free < needed:
        raise OSError(
            errno.ENOSPC,
            f"No space left on device: a checkpoint needs about {needed >> 20} MB, "
            f"{free >> 20} MB are free",
            str(root),
        )


def callback_states(callbacks: Sequence[Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """What each of Keras's stateful callbacks holds between epochs (`_kept_attributes`):
    its numbers for JSON, and its lists of arrays (early stopping's `best_weights`) as arrays
    named `<callback>.<attribute>.<index>`. Other callbacks keep nothing: they start afresh.
    """
    import numpy as np

    states: list[dict[str, Any]] = []
    arrays: dict[str, Any] = {}
    for index, callback in enumerate(callbacks):
        state: dict[str, Any] = {}
        for name in _kept_attributes(callback):
            value = getattr(callback, name, None)
            if getattr(value, "ndim", None) == 0:  # a NumPy, TensorFlow or JAX scalar
                value = np.asarray(value).item()
            if isinstance(value, list):
                state[name] = {"arrays": len(value)}
                arrays.update({f"{index}.{name}.{i}": np.asarray(v) for i, v in enumerate(value)})
            else:
                state[name] = value
        states.append(state)
    return states, arrays


def _kept_attributes(callback: Any) -> tuple[str, ...]:
    """The attributes of a Keras callback that its `on_train_begin` resets and its epochs
    build up. Not their settings, some of which they change in place (`min_delta` is
    negated the first time a lower value is better), and which the spec sets again."""
    import keras

    kept = {
        keras.callbacks.EarlyStopping: (
            "wait",
            "stopped_epoch",
            "best",
            "best_epoch",
            "best_weights",
        ),
        keras.callbacks.ReduceLROnPlateau: ("wait", "best", "cooldown_counter"),
        keras.callbacks.ModelCheckpoint: ("best",),
    }
    return next((names for kind, names in kept.items() if isinstance(callback, kind)), ())


def restore_callback_states(
    callbacks: Sequence[Any], states: list[dict[str, Any]], arrays: Any
) -> None:
    """Set on `callbacks` what `callback_states` saved of them.

    Raises:
        ValueError: the states are of another number of callbacks.
    """
    if len(states) != len(callbacks):
        raise ValueError(f"it holds {len(states)} callbacks' state, the spec has {len(callbacks)}")
    for index, (callback, state) in enumerate(zip(callbacks, states, strict=True)):
        for name, value in state.items():
            if isinstance(value, dict):
                value = [arrays[f"{index}.{name}.{i}"] for i in range(value["arrays"])]
            setattr(callback, name, value)


@functools.cache
def _backup_class() -> type:
    """The callback's class, made on first use: this module must not import Keras itself."""
    import keras
    import numpy as np

    class Backup(keras.callbacks.BackupAndRestore):
        """`BackupAndRestore` that writes each epoch's state whole or not at all, with the
        seed generators' states beside the weights, and the state of the callbacks `kept`
        (see the module's docstring)."""

        def __init__(self, backup_dir: str, kept: Sequence[Any] = ()):
            super().__init__(backup_dir, delete_checkpoint=False)
            self.kept = list(kept)

        def _seed_states(self) -> list[Any]:
            return [
                generator.state
                for layer in self.model._flatten_layers(include_self=True, recursive=True)
                for generator in getattr(layer, "_seed_generators", [])
            ]

        def _save_model(self) -> None:
            with signals.deferred():
                self._save_epoch()

        def _save_epoch(self) -> None:
            root = Path(self.backup_dir)
            epoch = self._current_epoch
            for stale in root.glob("epoch-*.partial"):  # left by a kill
                shutil.rmtree(stale, ignore_errors=True)
            partial, whole = root / f"epoch-{epoch}.partial", root / f"epoch-{epoch}"
            _room_for(root, self.model)
            partial.mkdir(parents=True)
            with (partial / SEEDS).open("wb") as file:
                np.savez(file, *[np.asarray(state.numpy()) for state in self._seed_states()])
            self.model.save_weights(str(partial / WEIGHTS))
            states, arrays = callback_states(self.kept)
            (partial / CALLBACKS).write_text(json.dumps(states))
            if arrays:
                with (partial / CALLBACK_ARRAYS).open("wb") as file:
                    np.savez(file, **arrays)
            shutil.rmtree(whole, ignore_errors=True)
            partial.rename(whole)
            for older in saved_epochs(root)[1:]:
                shutil.rmtree(root / f"epoch-{older}", ignore_errors=True)

        def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
            # Keras leaves the restored epoch on the model; a later `fit` (the next stage)
            # must not start from this stage's.
            self.model._initial_epoch = None
            epochs = saved_epochs(Path(self.backup_dir))
            if epochs:
                self._restore(epochs[0])

        def _restore(self, epoch: int) -> None:
            folder = Path(self.backup_dir) / f"epoch-{epoch}"
            optimizer = self.model.optimizer
            if optimizer is not None and not optimizer.built:  # its variables, to load into
                optimizer.build(self.model.trainable_variables)
            try:
                self.model.load_weights(str(folder / WEIGHTS))
                with np.load(folder / SEEDS) as saved:
                    states = [saved[f"arr_{i}"] for i in range(len(saved.files))]
                if (folder / CALLBACKS).exists():  # checkpoints of older dlx versions lack it
                    kept = json.loads((folder / CALLBACKS).read_text())
                    arrays = {}
                    if (folder / CALLBACK_ARRAYS).exists():
                        with np.load(folder / CALLBACK_ARRAYS) as saved:
                            arrays = {name: saved[name] for name in saved.files}
                    restore_callback_states(self.kept, kept, arrays)
            except (OSError, ValueError, KeyError) as exc:  # written whole, then damaged
                raise DlxError(
                    f"the checkpoint {folder} cannot be read ({exc}); delete that folder to "
                    "resume from the epoch before it, if it is there"
                ) from exc
            for state, value in zip(self._seed_states(), states, strict=True):
                state.assign(value)
            self.model._initial_epoch = epoch

    return Backup
