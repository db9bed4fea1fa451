"""Sender benchmark: `send_files` with its ReactorCheckpoint against pynetdicom's own reactor pause, same
data, same SCP, same run.

The SCP is bench.ingest's bare one (a handler that only says Success) in its own process. Per round and
per sender: one association with every instance; 8 associations at once from one process with an
eighth each; and the load that loses responses with pynetdicom's pause alone: 4 associations at once
beside 2 threads that hold the GIL, counting the instances not acknowledged (a dropped response, then
the rest of that association lost). Rounds are interleaved; rates are medians.

    python -m bench.sender --instances 400 --rounds 4 --output sender.md
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import threading
import time
from pathlib import Path


from bench.ingest import bare_scp, machine, publish
from dicom_node.dicom import sender
from dicom_node.dicom.sender import send_files

TIMEOUT = 5.0  # seconds a lost response holds its association up


@contextlib.contextmanager
def pynetdicom_pause():
    """The sender as it was: no checkpoint installed, no wait before a send beyond pynetdicom's own."""
    install, pause = sender._install_checkpoint, sender._pause_reactor
    sender._install_checkpoint = lambda event: None
    sender._pause_reactor = lambda assoc: assoc.is_established
    try:
        yield
    finally:
        sender._install_checkpoint, sender._pause_reactor = install, pause


def send_at_once(port: int, paths: list[Path], associations: int, busy_threads: int = 0) -> tuple[float, int]:
    """(instances/s, instances not acknowledged) of `associations` senders in threads of this process."""
    outcomes: list[list] = [[] for _ in range(associations)]
    stop = threading.Event()

    def send(k: int) -> None:
        outcomes[k] = send_files("127.0.0.1", port, paths[k::associations], timeout=TIMEOUT)

    def busy() -> None:
        while not stop.is_set():
            sum(range(1000))

    spinners = [threading.Thread(target=busy) for _ in range(busy_threads)]
    senders = [threading.Thread(target=send, args=(k,)) for k in range(associations)]
    for thread in spinners:
        thread.start()
    started = time.perf_counter()
    for thread in senders:
        thread.start()
    for thread in senders:
        thread.join()
    seconds = time.perf_counter() - started
    stop.set()
    for thread in spinners:
        thread.join()
    return len(paths) / seconds, sum(o.status != 0 for sent in outcomes for o in sent)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=400, help="instances per measurement (default 400)")
    parser.add_argument("--rounds", type=int, default=4, help="repeat, report medians and totals (default 4)")
    parser.add_argument("--output", type=Path, help="also write the Markdown table to this file")
    args = parser.parse_args(argv)
    from tests.support.dicom_factory import mr_instance, write_files

    senders = {"pynetdicom's pause": pynetdicom_pause, "ReactorCheckpoint": contextlib.nullcontext}
    rates: dict[tuple[str, int], list[float]] = {}
    lost: dict[str, list[int]] = {name: [] for name in senders}
    with tempfile.TemporaryDirectory(prefix="slmnode-sender-") as temp:
        paths = write_files([mr_instance(f"t2_tse_tra_{n}") for n in range(args.instances)], Path(temp))
        with bare_scp() as port:
            for _ in range(args.rounds):
                for name, how in senders.items():
                    with how():
                        for associations in (1, 8):
                            rates.setdefault((name, associations), []).append(
                                send_at_once(port, paths, associations)[0])
                        lost[name].append(send_at_once(port, paths, 4, busy_threads=2)[1])
    base = "pynetdicom's pause"
    rows = []
    for name in senders:
        one, eight = (statistics.median(rates[name, n]) for n in (1, 8))
        ratio = [f"{x / statistics.median(rates[base, n]):.2f}x" for x, n in ((one, 1), (eight, 8))]
        losing = sum(count > 0 for count in lost[name])
        rows.append(f"| {name} | {one:.0f} ({ratio[0]}) | {eight:.0f} ({ratio[1]}) | "
                    f"{losing} of {args.rounds} | {sum(lost[name])} |")
    table = (
        "| sender | 1 association: instances/s | 8 at once | rounds losing a response (4 at once, 2 busy threads) "
        "| instances not acknowledged |\n|---|---:|---:|---:|---:|\n" + "\n".join(rows) + "\n\n"
        f"{args.instances} MR instances per measurement, medians of {args.rounds} rounds, {machine()}.\n"
    )
    publish(table, args.output)


if __name__ == "__main__":
    main()
