"""Signals become stop requests inside ``stop_on_signals`` and the previous handlers come back after it."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from binsight.utils.signals import StopFlag, stop_on_signals


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_sets_the_flag_instead_of_killing(sig):
    before = signal.getsignal(sig)
    flag = StopFlag()
    with stop_on_signals(flag):
        os.kill(os.getpid(), sig)
        assert flag.requested and flag.reason == signal.Signals(sig).name
    assert signal.getsignal(sig) == before


def test_second_ctrl_c_aborts_at_once():
    flag = StopFlag()
    with stop_on_signals(flag), pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)


def test_worker_threads_leave_handlers_alone():
    before = signal.getsignal(signal.SIGTERM)
    seen = []

    def worker():
        with stop_on_signals(StopFlag()):
            seen.append(signal.getsignal(signal.SIGTERM))

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert seen == [before]
