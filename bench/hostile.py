"""Ingest under a junk-connection flood: legitimate senders' instances per second into the node while a
hostile peer on the same network opens junk connections, as a ratio to the same run without it.

The node is `slmnode serve` as it ships (metadata only, synchronous=full), in its own process, fed as
in bench/ingest.py: one association with every instance, then 8 at once with an eighth each. The flood,
a process of its own, opens `--junk-rate` connections per second for as long as the senders run, in
turn: one that sends an HTTP request and closes; one that stays open and silent (up to `--idle` of
them, the oldest closed beyond that); one that sends the first bytes of an A-ASSOCIATE-RQ and stalls.
Rounds alternate the quiet and the flooded run; the table shows medians.

    python -m bench.hostile --instances 500 --rounds 3 --output bench/hostile.md
"""

from __future__ import annotations

import argparse
import multiprocessing
import shutil
import socket
import statistics
import sys
import tempfile
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path


from bench.ingest import PARALLEL, Receiver, machine, make_data, measure

JUNK = b"GET / HTTP/1.1\r\nHost: node\r\n\r\n"
STALLED_REQUEST = b"\x01\x00\x00\x00\x10\x00"  # an A-ASSOCIATE-RQ PDU header promising 4 KiB, then nothing


def flood(port: int, rate: float, idle: int, stop, opened) -> None:
    """Junk connections at `rate` per second until `stop` is set; `opened` counts them."""
    held: deque[socket.socket] = deque()
    kinds = ["junk", "idle", "stalled"]
    number = 0
    while not stop.is_set():
        started = time.monotonic()
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            kind = kinds[number % len(kinds)]
            if kind == "junk":
                sock.sendall(JUNK)
                sock.close()
            else:
                sock.sendall(b"" if kind == "idle" else STALLED_REQUEST)
                held.append(sock)
                while len(held) > idle:
                    held.popleft().close()
            number += 1
            with opened.get_lock():
                opened.value += 1
        except OSError:
            pass  # refused or reset by the node: the flood goes on
        time.sleep(max(0.0, 1 / rate - (time.monotonic() - started)))
    for sock in held:
        sock.close()


@dataclass
class FloodedNode(Receiver):
    """The node, with the flood started once it answers and left running for the senders."""

    rate: float = 50.0
    idle: int = 64

    def start(self, port: int, workdir: Path):
        process = super().start(port, workdir)
        context = multiprocessing.get_context("fork")
        self.stop, self.opened = context.Event(), context.Value("i", 0)
        self.flood = context.Process(target=flood, args=(port, self.rate, self.idle, self.stop, self.opened))
        self.flood.start()
        time.sleep(1.0)  # the flood is under way before the senders start
        return process

    def stop_flood(self) -> int:
        """Stop the flood; how many junk connections it opened."""
        self.stop.set()
        self.flood.join(10)
        return self.opened.value


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=500, help="instances per measurement (default 500)")
    parser.add_argument("--rows", type=int, default=256, help="image rows = columns, 16 bits (default 256)")
    parser.add_argument("--rounds", type=int, default=3, help="repeat everything, report the median (default 3)")
    parser.add_argument("--junk-rate", type=float, default=50.0, help="junk connections per second (default 50)")
    parser.add_argument("--idle", type=int, default=64, help="idle or stalled connections held open (default 64)")
    parser.add_argument("--output", type=Path, help="also write the Markdown table to this file")
    args = parser.parse_args(argv)

    node = Receiver("slmnode, metadata only", "node", "metadata")
    flooded = FloodedNode(node.name, "node", "metadata", rate=args.junk_rate, idle=args.idle)
    workroot = Path(tempfile.mkdtemp(prefix="slmnode-hostile-"))
    try:
        parts = make_data(workroot / "data", args.instances, args.rows)
        results = {(parallel, flooded): [] for parallel in (False, True) for flooded in (False, True)}
        junk = []
        for round_number in range(1, args.rounds + 1):
            for parallel in (False, True):
                quiet = measure(node, parts, parallel, workroot)
                under_flood = measure(flooded, parts, parallel, workroot)
                opened = flooded.stop_flood()
                results[parallel, False].append(quiet)
                results[parallel, True].append(under_flood)
                junk.append(opened)
                print(f"round {round_number}, {'8 associations' if parallel else '1 association'}: "
                      f"{quiet or float('nan'):.0f} quiet, {under_flood or float('nan'):.0f} under flood "
                      f"({opened} junk connections)", file=sys.stderr)
    finally:
        shutil.rmtree(workroot, ignore_errors=True)

    def median(rates):
        counted = [rate for rate in rates if rate is not None]
        return statistics.median(counted) if counted else float("nan")

    lines = [
        f"{args.instances} MR instances ({args.rows}x{args.rows}, 16 bits), 127.0.0.1, median of {args.rounds} "
        f"rounds; flood of {args.junk_rate:g} junk connections/s, up to {args.idle} held open (median "
        f"{statistics.median(junk):.0f} per run); {machine()}. A run with any instance not stored counts as nan.",
        "",
        "| senders | quiet: instances/s | under flood: instances/s | flood / quiet |",
        "|---|---:|---:|---:|",
    ]
    for parallel in (False, True):
        quiet, flooded = median(results[parallel, False]), median(results[parallel, True])
        label = f"{PARALLEL} associations at once" if parallel else "1 association"
        lines.append(f"| {label} | {quiet:.0f} | {flooded:.0f} | {flooded / quiet:.2f}x |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.output:
        args.output.write_text(text)


if __name__ == "__main__":
    main()
