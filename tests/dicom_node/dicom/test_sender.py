"""The SCU side against a real pynetdicom SCP on loopback: no response is lost to pynetdicom's own
association reactor (dicom_node.dicom.sender.ReactorCheckpoint)."""

from __future__ import annotations

import threading
import time

from dicom_node.dicom import sender
from dicom_node.dicom.sender import ReactorCheckpoint, send_files
from tests.support.destination import Destination
from tests.support.dicom_factory import mr_instance, write_files
from tests.support.helpers_dicom import TIMEOUT, wait_for


class LateReactor(ReactorCheckpoint):
    """The reactor of an association that the scheduler runs late: let go, it leaves its wait only
    once a response is queued (or 0.1 s passed), the worst moment: it then takes that response."""

    def __init__(self, assoc):
        super().__init__()
        self.responses = assoc.dimse.msg_queue

    def wait(self, timeout=None):
        blocked = not self.is_set()
        opened = super().wait(timeout)
        deadline = time.monotonic() + 0.1
        while blocked and self.responses.empty() and time.monotonic() < deadline:
            pass
        return opened


def test_a_reactor_that_runs_late_takes_no_response(tmp_path, monkeypatch):
    # Without ReactorCheckpoint.pause (pynetdicom's own pause) the late reactor takes the second
    # response off the queue and drops it; that send waits out its timeout (measured: 1 file of 10 stored).
    monkeypatch.setattr(sender, "_install_checkpoint", lambda event: setattr(
        event.assoc, "_reactor_checkpoint", LateReactor(event.assoc)))
    paths = write_files([mr_instance(f"t2 {n}") for n in range(10)], tmp_path)
    with Destination() as destination:
        outcomes = send_files("127.0.0.1", destination.port, paths, timeout=TIMEOUT)
    assert [o.status for o in outcomes] == [0] * len(paths)
    assert len(destination.received) == len(paths)


def reactor(checkpoint: ReactorCheckpoint, state: dict, stop: threading.Event) -> None:
    """pynetdicom's reactor loop as far as pausing goes, run late: let go, it takes 50 ms to lower
    its `paused` flag and come round to the checkpoint again."""
    while not stop.is_set():
        time.sleep(0.001)
        state["paused"] = True
        checkpoint.wait()
        state["let go"] += 1
        time.sleep(0.05)
        state["paused"] = False


def test_pause_waits_for_the_reactor_to_come_round_not_for_its_stale_flag():
    checkpoint, state, stop = ReactorCheckpoint(), {"paused": False, "let go": 0}, threading.Event()
    thread = threading.Thread(target=reactor, args=(checkpoint, state, stop))
    thread.start()
    try:
        for exchange in range(1, 4):
            checkpoint.pause(thread.is_alive, TIMEOUT)
            assert state["paused"]  # parked: the exchange may go ahead
            let_go = state["let go"]
            checkpoint.set()  # the exchange is over
            assert wait_for(lambda: state["let go"] > let_go, TIMEOUT)
            # The next exchange: pynetdicom's pause would go ahead now, on the stale flag ...
            assert state["paused"]
            checkpoint.pause(thread.is_alive, TIMEOUT)
            # ... ours only once the reactor has run and waits again.
            assert state["paused"] and checkpoint.parked
            checkpoint.set()
    finally:
        stop.set()
        checkpoint.set()
        thread.join()
