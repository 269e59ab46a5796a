"""Ctrl-C and SIGTERM: a stop is never lost, and a second one always ends the process."""

import signal
import subprocess
import sys
import weakref

import pytest

from dlx.errors import Interrupted, Terminated
from dlx.proc import signals


class _Thing:
    pass


def test_a_stop_lost_in_a_garbage_collectors_callback_is_raised_at_the_next_check(capsys):
    with signals.stops_raised():
        thing = _Thing()
        # The handler runs inside the weakref's callback, where Python prints the exception
        # as "Exception ignored" and drops it: the program goes on as if nothing had come.
        ref = weakref.ref(thing, lambda _: signal.raise_signal(signal.SIGTERM))
        del thing
        assert ref() is None
        assert signals.asked()
        assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_IGN, signal.SIG_DFL)
        with pytest.raises(Terminated):
            signals.check()
    assert "Exception ignored" not in capsys.readouterr().err
    assert not signals.asked()
    signals.check()  # outside the block: nothing asked


def test_ctrl_c_raises_interrupted_and_the_handlers_come_back_after_the_block():
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with pytest.raises(Interrupted) as raised, signals.stops_raised():
        signal.raise_signal(signal.SIGINT)
    assert type(raised.value) is Interrupted
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


_TWICE = """
import os, signal, time
from dlx.proc import signals
with signals.stops_raised(on_second=lambda n: print("second", n, flush=True)):
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(30)
    except KeyboardInterrupt as exc:
        print(type(exc).__name__, flush=True)
        os.kill(os.getpid(), signal.SIGINT)  # while the first is handled: ends it at once
        time.sleep(30)
        print("still running", flush=True)
"""


def test_a_second_signal_ends_the_process_at_once_whatever_it_is_doing():
    done = subprocess.run(
        [sys.executable, "-c", _TWICE], capture_output=True, text=True, timeout=60
    )
    assert done.stdout.split("\n") == ["Terminated", f"second {int(signal.SIGINT)}", ""]
    assert done.returncode == -signal.SIGINT


def test_signals_wait_for_a_deferred_block_and_then_take_effect():
    with signals.stops_raised():
        with pytest.raises(Terminated), signals.deferred():
            signal.raise_signal(signal.SIGTERM)
            written = True  # the block ran to its end before the stop took effect
        assert written
