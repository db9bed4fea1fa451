"""Forwarding benchmark: instances per second the routing worker forwards, against a direct send of the
same files to the same destination, in the same run.

The destination is bench.ingest's bare SCP (a handler that only says Success) in its own process. The
direct row is `send_files` over one association, as `slmnode send` does. The routing row is the node's
routing worker with one rule matching every series, draining a store of instances received in files
mode (the node received and harmonized them first, untimed): queueing the rule's rows, claiming them,
sending over one association per batch and committing each instance's `sent` (fsync'd, synchronous=full)
as its Success comes. Rounds are interleaved; the table shows the median.

    python -m bench.forwarding --instances 500 --rounds 3 --output forwarding.md
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path


from dicom_node.dicom.sender import send_files
from dicom_node.jobs.routing import RoutingWorker
from dicom_node.node import Node
from dicom_node.config import Settings
from dicom_node.store import routes
from dicom_node.store.database import Store
from bench.ingest import bare_scp, machine, publish
from slm.rules import RuleHarmonizer


def node_settings(workdir: Path, destination_port: int, rule_name: str = "all") -> Settings:
    rule = {"name": rule_name, "send_to": {"ae_title": "BARE", "host": "127.0.0.1", "port": destination_port}}
    return Settings.model_validate(
        {
            "dicom": {"bind_address": "127.0.0.1", "port": 0},
            "storage": {"mode": "files", "folder": str(workdir / "received")},
            "store": {"url": f"sqlite:///{workdir / 'node.sqlite'}"},
            "harmonizer": {"poll_seconds": 0.1},
            "routing": {"rules": [rule], "poll_seconds": 0.1},
        }
    )


def receive(settings: Settings, paths: list[Path]) -> None:
    """The node receives and harmonizes the files (untimed); its routing worker stays off."""
    node = Node(settings.model_copy(update={"routing": settings.routing.model_copy(update={"rules": []})}),
                RuleHarmonizer()).start()
    try:
        outcomes = send_files("127.0.0.1", node.port, paths, called_aet="SLMNODE")
        assert all(outcome.stored for outcome in outcomes), "the node did not store every instance"
        while any(mapping.status == "queued" for mapping in _mappings(node.store)):
            time.sleep(0.1)
    finally:
        node.stop()


def _mappings(store: Store):
    from dicom_node.store.mappings import mappings

    return mappings(store.engine)


def direct(port: int, paths: list[Path]) -> float:
    start = time.perf_counter()
    outcomes = send_files("127.0.0.1", port, paths, called_aet="BARE")
    elapsed = time.perf_counter() - start
    assert all(outcome.stored for outcome in outcomes)
    return len(paths) / elapsed


def forwarded(settings: Settings, rule_name: str, count: int) -> float:
    """Rate of one routing worker draining a new rule's queue (queueing included)."""
    rules = [settings.routing.rules[0].model_copy(update={"name": rule_name})]
    store = Store(settings.store.url)
    try:
        worker = RoutingWorker(store, settings.routing.model_copy(update={"rules": rules}), "SLMNODE")
        start = time.perf_counter()
        while sum(route.sent for route in routes.summary(store.engine) if route.rule == rule_name) < count:
            worker.run_once()
        return count / (time.perf_counter() - start)
    finally:
        store.close()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=500, help="instances per measurement (default 500)")
    parser.add_argument("--rows", type=int, default=256, help="image rows = columns, 16 bits (default 256)")
    parser.add_argument("--rounds", type=int, default=3, help="repeat, report the median (default 3)")
    parser.add_argument("--output", type=Path, help="also write the Markdown table to this file")
    args = parser.parse_args(argv)
    from tests.support.dicom_factory import brain_study, write_files

    with tempfile.TemporaryDirectory(prefix="slmnode-forward-") as temp:
        workdir = Path(temp)
        datasets = []
        while len(datasets) < args.instances:
            datasets += brain_study(images_per_series=20, rows=args.rows, patient=f"Bench{len(datasets)}")
        paths = write_files(datasets[: args.instances], workdir / "in")
        with bare_scp() as port:  # the destination
            settings = node_settings(workdir, port)
            receive(settings, paths)
            rates = {"direct": [], "routed": []}
            for round_ in range(args.rounds):
                rates["direct"].append(direct(port, paths))
                rates["routed"].append(forwarded(settings, f"round{round_}", len(paths)))
    direct_rate, routed_rate = (statistics.median(rates[key]) for key in ("direct", "routed"))
    table = (
        "| Sender | instances/s | vs direct |\n|---|---:|---:|\n"
        f"| direct send (`send_files`, one association) | {direct_rate:.0f} | 1.00x |\n"
        f"| routing worker (queue, claim, send, commit each `sent`) | {routed_rate:.0f} | "
        f"{routed_rate / direct_rate:.2f}x |\n\n"
        f"{args.instances} MR instances of {args.rows * args.rows * 2 // 1024} KiB, median of {args.rounds} rounds, "
        f"{machine()}.\n"
    )
    publish(table, args.output)


if __name__ == "__main__":
    main()
