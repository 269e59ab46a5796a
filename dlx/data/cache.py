"""The cache of a streamed source's decoded examples: in memory, on disk, or none
(`data.cache`, docs/spec.md section 3)."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dlx.data.sources import FileStream, SourceError

if TYPE_CHECKING:
    import tensorflow as tf

AUTO_CACHE_BYTES = 256 * 2**20
"""`cache: auto` keeps a streamed source in memory when its decoded examples (or, when their
size is unknown, its files on disk) take less than this."""


def choose_cache(cache: Any, streams: list[FileStream], base_dir: Path, fingerprint: str) -> str:
    """The cache a streamed run uses: `memory`, `none` or the disk cache's file prefix (the
    path given, relative to the spec's directory, and the data's fingerprint: files that
    change get a cache of their own).

    `auto` is `memory` when the decoded examples of every stream take less than
    `AUTO_CACHE_BYTES` (their files on disk, when an example's size is unknown), else `none`.
    """
    if not isinstance(cache, str):
        prefix = base_dir / cache.disk
        try:
            check_disk_cache(prefix)
            prefix.parent.mkdir(parents=True, exist_ok=True)
        except (SourceError, OSError) as exc:
            message = exc.message if isinstance(exc, SourceError) else _cannot_write(prefix, exc)
            raise SourceError(message).at("data", "cache", "disk") from None
        return f"{prefix}-{fingerprint[:16]}"
    if cache != "auto":
        return cache
    total = sum(
        stream.num_examples * stream.example_bytes
        if stream.example_bytes is not None
        else sum(file.stat().st_size for file in stream.files)
        for stream in streams
    )
    return "memory" if total < AUTO_CACHE_BYTES else "none"


def check_disk_cache(prefix: Path) -> None:
    """Check that a disk cache can be written at `prefix`: its folder, or the nearest folder
    above it that exists, is writable.

    Raises:
        SourceError: it cannot, saying which folder and what to do.
    """
    folder = next(f for f in (prefix.parent, *prefix.parent.parents) if f.exists())
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise SourceError(
            f"the cache cannot be written: {folder} is not a writable folder. Give a path in one "
            "that is, or use cache: memory"
        )


def _cannot_write(prefix: Path, exc: OSError) -> str:
    return (
        f"the cache cannot be written at {prefix}: {exc.strerror or exc}. Give a path in a "
        "writable folder, or use cache: memory"
    )


def cached(dataset: tf.data.Dataset, cache: str, name: str) -> tf.data.Dataset:
    """A split's decoded examples, cached as chosen (`choose_cache`).

    A disk cache is filled now, whole, under a name of this process's own, then renamed to its
    place: a fill that is killed leaves only its own files (and tf.data's `.lockfile`) behind,
    removed by the next fill, and two runs that fill the same cache at once each fill their own
    and rename the same examples into place. A cache in place is read as it is.
    """
    if cache == "none":
        return dataset
    if cache == "memory":
        return dataset.cache()
    prefix = f"{cache}-{name}"
    if not Path(f"{prefix}.index").exists():
        _fill_disk_cache(dataset, prefix)
    return dataset.cache(prefix)


def _fill_disk_cache(dataset: tf.data.Dataset, prefix: str) -> None:
    """Fill a disk cache under `prefix.fill-PID`, then rename its files to `prefix`.

    The fill holds an exclusive `flock` on `prefix.fill-PID.lock` while it runs: the files of
    a fill whose lock can be taken are a killed fill's (tf.data's `.lockfile` among them,
    which would stop any later fill), and are removed first.
    """
    folder, stem = Path(prefix).parent, Path(prefix).name
    for lock in folder.glob(f"{stem}.fill-*.lock"):
        with lock.open("a") as held:
            try:
                fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # another process is filling it
            name = lock.name.removesuffix(".lock")
            # tf.data's own files: `NAME_0.lockfile`, `NAME_0.data-*.tempstate*`, ...
            for leftover in [*folder.glob(f"{name}.*"), *folder.glob(f"{name}_*")]:
                leftover.unlink(missing_ok=True)
    filling = f"{prefix}.fill-{os.getpid()}"
    with open(f"{filling}.lock", "a") as filling_lock:
        fcntl.flock(filling_lock, fcntl.LOCK_EX)
        for _ in dataset.cache(filling):
            pass
        # The data files first: a cache is complete once its `.index` is in place.
        name = Path(filling).name
        for data in sorted(folder.glob(f"{name}.data-*")):
            os.replace(data, f"{prefix}{data.name[len(name) :]}")
        os.replace(f"{filling}.index", f"{prefix}.index")
        Path(f"{filling}.lock").unlink()
