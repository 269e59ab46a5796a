"""A folder written whole or not at all: where `dlx export` writes its files.

An export is written into a folder of its own beside its destination,
`.<name>.<random>.partial`, and renamed into place once it is complete. A reader of the
destination finds an earlier export or the new one, never a half-written one; an export that
fails removes its folder (and the parents it made). Two exports to one destination write apart,
and the one that finishes last is the one that stays.

Putting a folder where none is, or where an empty one is, is one `rename`. Replacing an earlier
export is one step too where the system can swap two paths (Linux's `renameat2` with
`RENAME_EXCHANGE`); elsewhere the earlier export is moved aside first, so that for an instant
there is no folder at all, though never a partial one.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from dlx.errors import DlxError, UsageError

PUBLISH_ATTEMPTS = 20
"""How many times a folder is put in place while other writers keep replacing the destination."""

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


@contextlib.contextmanager
def staged_folder(destination: Path, *, replaceable: Callable[[Path], bool]) -> Iterator[Path]:
    """A new folder beside `destination`, renamed to it when the block ends without an error.

    Args:
        destination: the folder to write; it may exist when it is empty or `replaceable`.
        replaceable: whether an existing folder holds only what an earlier writer put there
            (an earlier export), so that it may be replaced whole.

    Yields:
        The folder to write into.

    Raises:
        UsageError: `destination` is a file, the working directory or a folder above it, or a
            folder with other files (checked before the block runs, and again after it).
        DlxError: other writers kept replacing `destination` for `PUBLISH_ATTEMPTS` tries.
    """
    destination = destination.resolve()
    _check_destination(destination, replaceable)
    made = [folder for folder in destination.parents if not folder.exists()]
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = destination.with_name(f".{destination.name}.{uuid.uuid4().hex[:12]}.partial")
    staging.mkdir()
    try:
        yield staging
        _check_destination(destination, replaceable)
        _publish(staging, destination)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        for folder in made:  # the deepest first: each is removed only once it is empty
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise


def _check_destination(destination: Path, replaceable: Callable[[Path], bool]) -> None:
    if destination == Path.cwd().resolve() or destination in Path.cwd().resolve().parents:
        raise UsageError(
            f"--output: {destination} is the working directory or holds it; the export replaces "
            "its folder whole: give a folder of its own, such as ./export"
        )
    if destination.exists() and not destination.is_dir():
        raise UsageError(f"--output: {destination} exists and is not a folder")
    if destination.is_dir() and any(destination.iterdir()) and not replaceable(destination):
        raise UsageError(
            f"--output: {destination} holds files of its own, which an export would replace: "
            "give a new or empty folder, or one an earlier export wrote"
        )


def _publish(staging: Path, destination: Path) -> None:
    """Rename `staging` to `destination`, replacing what is there; the replaced folder is
    removed."""
    replaced: list[Path] = []
    try:
        for attempt in range(PUBLISH_ATTEMPTS):
            try:
                staging.rename(destination)  # atomic; replaces an empty folder
                return
            except OSError as error:
                if error.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
            try:
                if _exchange(staging, destination):
                    replaced.append(staging)  # it holds the earlier export now
                    return
                aside = staging.with_name(f"{staging.name}.replaced-{attempt}")
                destination.rename(aside)
                replaced.append(aside)
            except FileNotFoundError:  # another writer moved it away meanwhile
                continue
        raise DlxError(
            f"could not put the export in place at {destination}: other exports kept "
            f"replacing it ({PUBLISH_ATTEMPTS} tries)"
        )
    finally:
        for folder in replaced:
            shutil.rmtree(folder, ignore_errors=True)


def _exchange(first: Path, second: Path) -> bool:
    """Swap two existing paths in one step; False where the system or its filesystem cannot.

    Raises:
        FileNotFoundError: one of them does not exist.
    """
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)  # glibc 2.28 and later
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE):
        error = ctypes.get_errno()
        if error in (errno.EINVAL, errno.ENOSYS):  # a kernel or filesystem without it
            return False
        raise OSError(error, os.strerror(error), str(second))
    return True
