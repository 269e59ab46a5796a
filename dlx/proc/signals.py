"""Ctrl-C and SIGTERM: a stop that cannot be lost, and a second one that always ends the process.

Python runs a signal's handler in the main thread between two bytecodes of whatever runs there:
a weakref callback or a `__del__` run by the garbage collector included. An exception raised
there is printed as "Exception ignored" and dropped, and the program goes on as if no signal had
come. So the handler of `stops_raised` does not only raise: it records the stop, and `check`
raises it again at the next safe point (training calls it after each batch, a sweep between its
trials), so a stop asked for is never lost. It never ignores a signal: a second Ctrl-C or SIGTERM
ends the process at once, with the signal's own default action.

`deferred` holds both signals back while a block that must not be cut in two runs (writing a
checkpoint), then delivers them.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

from dlx.errors import Interrupted, Terminated

STOPS = (signal.SIGINT, signal.SIGTERM)

_asked: list[type[Interrupted]] = []
"""The stop asked for (one at most), from the first signal until `stops_raised` is left."""
_on_second: list[Callable[[int], None]] = []
"""What `stops_raised` was told to call on a second signal, before the process ends."""


def check() -> None:
    """Raise the stop a signal asked for, if one did: its exception may have been lost."""
    if _asked:
        raise _asked[0]()


def asked() -> bool:
    """Whether a signal asked this process to stop."""
    return bool(_asked)


@contextlib.contextmanager
def stops_raised(on_second: Callable[[int], None] | None = None) -> Iterator[None]:
    """While the block runs, Ctrl-C raises `Interrupted` and SIGTERM `Terminated` in it.

    Both are `KeyboardInterrupt`s, so whatever stops on Ctrl-C stops on either, and a run in
    progress is recorded KILLED. The stop is recorded too, for `check` to raise again where the
    first exception was lost. A second signal ends the process with its default action, after
    calling `on_second` with its number (the CLI says what is left). Off the main thread (which
    alone may set handlers) the block runs as it is.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        if _asked:
            _end_now(signum)
        _asked.append(Terminated if signum == signal.SIGTERM else Interrupted)
        raise _asked[0]()

    previous = {number: signal.signal(number, handler) for number in STOPS}
    unraisable = sys.unraisablehook
    sys.unraisablehook = _quiet_about_stops(unraisable)
    if on_second is not None:
        _on_second.append(on_second)
    try:
        yield
    finally:
        for number, before in previous.items():
            signal.signal(number, before)
        sys.unraisablehook = unraisable
        _asked.clear()
        _on_second.clear()


def _end_now(signum: int) -> None:
    """End the process with the signal's default action (the second signal of a stop)."""
    for said in _on_second:
        said(signum)
    for number in STOPS:
        signal.signal(number, signal.SIG_DFL)
    signal.raise_signal(signum)


def _quiet_about_stops(hook: Callable[[Any], object]) -> Callable[[Any], object]:
    """An unraisable hook that says nothing of a stop lost in a callback (`check` raises it)."""

    def quiet(unraisable: Any) -> object:
        if isinstance(unraisable.exc_value, Interrupted) and _asked:
            return None
        return hook(unraisable)

    return quiet


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Ctrl-C and SIGTERM wait until the block is done, then take effect.

    Their Python handlers raise in the main thread between two bytecodes: in the middle of
    writing a checkpoint, that would leave one that cannot be loaded, and no run to resume; in
    the middle of a database's commit, a lock that no one releases. A second signal (the first
    held here, or taken before) still ends the process at once.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def hold(signum: int, frame: object) -> None:
        if received or _asked:
            _end_now(signum)
        received.append(signum)

    previous = {
        number: signal.signal(number, hold)
        for number in STOPS
        if signal.getsignal(number) is not None  # a handler Python did not set stays
    }
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        for signum in received:
            signal.raise_signal(signum)
