"""Ingest benchmark: instances per second into the node, against a bare pynetdicom SCP, same data, same run.

Receivers, each in its own process on 127.0.0.1:
- bare pynetdicom SCP: the node's own AE (same presentation contexts, TCP_NODELAY) with a C-STORE
  handler that only returns Success; the ceiling for any pynetdicom-based node;
- `slmnode serve`, metadata only: every instance's row committed to SQLite (WAL, synchronous=FULL)
  before Success;
- `slmnode serve`, files: the same, after writing the instance to disk (fsync, rename, fsync folder);
- both again with store.synchronous=normal: commits without an fsync (durable against a crash of the
  node, not of the machine);
- the metadata node again with 2,000 reports waiting for the report job (the embedded model, CPU):
  once as shipped, the job yielding to ingest (reports.ingest_quiet_seconds 5), once not yielding;
- with --postgres: the metadata node with its store on PostgreSQL, then two such nodes sharing one
  database, the associations split between them (8 associations only: one cannot be split);
- DCMTK storescp --ignore --fork, fed by DCMTK storescu (TCP_NODELAY=1), when both are on PATH: native code.
Senders: `dicom_node.dicom.sender.send_files` (TCP_NODELAY, files sent as they are), one process per
association so the senders do not share a GIL; DCMTK storescu for the DCMTK row. Each receiver gets
one association with every instance, then 8 associations at once with an eighth each. Rounds repeat
the whole set, interleaved, and the table shows the median of the rounds.

    python -m bench.ingest --instances 1000 --rounds 3 --output bench/ingest.md
    python -m bench.ingest --postgres postgresql+psycopg://postgres@127.0.0.1:5432/postgres --only PostgreSQL
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import multiprocessing
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pynetdicom
import yaml
from sqlalchemy.engine import make_url

from dicom_node.dicom.sender import AssociationFailed, send_files, wait_until_answering
from dicom_node.reports.record import ReportRecord
from dicom_node.store.database import Store
from dicom_node.store.reports import record_report
from tests.support.databases import drop_database, make_database

PARALLEL = 8
REPORT_BACKLOG = 2000  # more than the embedded model labels during one measurement
ROOT = Path(__file__).resolve().parents[1]


# ---- receivers ----------------------------------------------------------------------------------


def machine() -> str:
    """What every benchmark's table says it ran on."""
    return f"{os.cpu_count()} CPU cores, Python {platform.python_version()}, pynetdicom {pynetdicom.__version__}"


def publish(table: str, output: Path | None) -> None:
    """Print a benchmark's Markdown table, and write it to `output` when one is given."""
    print(table, end="")
    if output:
        output.write_text(table, encoding="utf-8")


def run_bare_scp(port: int) -> None:
    """The reference receiver: the node's AE, its TCP_NODELAY handler, and a handler that only says Success."""
    from pynetdicom import evt

    from dicom_node.config import Settings
    from dicom_node.dicom.network import NODELAY_HANDLERS, quiet_dicom_libraries
    from dicom_node.dicom.scp import make_ae
    from dicom_node.dicom.status import StoreStatus

    quiet_dicom_libraries()
    ae = make_ae(Settings.model_validate({"dicom": {"max_associations": 2 * PARALLEL}}))
    handlers = [*NODELAY_HANDLERS, (evt.EVT_C_STORE, lambda event: StoreStatus.SUCCESS)]
    server = ae.start_server(("127.0.0.1", port), block=False, evt_handlers=handlers)
    signal.sigwait([signal.SIGTERM])
    server.shutdown()


@contextlib.contextmanager
def bare_scp() -> Iterator[int]:
    """run_bare_scp in a process of its own for the block, on a free port, which it yields once answering."""
    port = free_port()
    process = multiprocessing.get_context("spawn").Process(target=run_bare_scp, args=(port,), daemon=True)
    process.start()
    try:
        if not wait_until_answering("127.0.0.1", port, 60):
            raise SystemExit("the bare SCP did not start")
        yield port
    finally:
        process.terminate()
        process.join()


@dataclass
class Receiver:
    name: str
    kind: str  # bare | node | dcmtk
    storage: str | None = None  # node: metadata | files
    synchronous: str = "full"  # node: store.synchronous
    report_backlog: int = 0  # node: reports waiting for the report job (which then runs the embedded model)
    ingest_quiet_seconds: float = 5.0  # node: reports.ingest_quiet_seconds
    postgres: bool = False  # node: the store is a new database on the --postgres server, not a SQLite file
    nodes: int = 1  # node: processes sharing the store, the associations sent to them in turn

    def store_url(self, workdir: Path, server: str | None) -> str | None:
        """A new store for one measurement (None for receivers without one)."""
        if self.kind != "node":
            return None
        if self.postgres:
            return make_database(server, f"slmnode_bench_{workdir.name.lower()}")
        return f"sqlite:///{workdir / 'node.sqlite'}"

    def start(self, ports: list[int], workdir: Path, store_url: str | None) -> list[subprocess.Popen]:
        """One process per port, all started at once, once each answers."""
        processes = [self._start(port, workdir, store_url) for port in ports]
        for port, process in zip(ports, processes):
            if not wait_until_answering("127.0.0.1", port, 60, lambda: process.poll() is None):
                for started in processes:
                    started.kill()
                raise RuntimeError(f"{self.name} did not start")
        return processes

    def _start(self, port: int, workdir: Path, store_url: str | None) -> subprocess.Popen:
        env = {**os.environ, "TCP_NODELAY": "1"}
        if self.kind == "bare":
            command = [sys.executable, "-m", "bench.ingest", "--bare-scp", str(port)]
        elif self.kind == "dcmtk":
            command = [find_dcmtk("storescp"), "--ignore", "--fork", "-aet", "STORESCP", str(port)]
        else:
            config = workdir / f"node-{port}.yaml"
            reports = {"interval_seconds": 0}  # no model in the process unless the row asks for the report job
            if self.report_backlog:
                add_report_backlog(store_url, self.report_backlog)
                reports = {"interval_seconds": 1.0, "batch_size": 4, "ingest_quiet_seconds": self.ingest_quiet_seconds}
            config.write_text(
                yaml.safe_dump(
                    {
                        "dicom": {"bind_address": "127.0.0.1", "port": port, "max_associations": 2 * PARALLEL},
                        "storage": {"mode": self.storage, "folder": str(workdir / "received")},
                        "store": {"url": store_url, "synchronous": self.synchronous},
                        "harmonizer": {"kind": "rules"},
                        "model": {"device": "cpu"},
                        "reports": reports,
                        "logging": {"level": "WARNING"},
                    }
                )
            )
            command = [sys.executable, "-m", "dicom_node.cli", "--config", str(config), "serve"]
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stored(self, store_url: str | None) -> int | None:
        """Instances the node's store holds after a run (None for receivers without a store)."""
        if store_url is None:
            return None
        from tests.support.store_counts import count_instances

        store = Store(store_url)
        try:
            return count_instances(store)
        finally:
            store.close()

    def drop_store(self, store_url: str | None, server: str | None) -> None:
        """A PostgreSQL store goes when its measurement ends (a SQLite one with the folder)."""
        if self.postgres:
            drop_database(server, make_url(store_url).database)


def add_report_backlog(store_url: str, count: int) -> None:
    """`count` chest X-ray reports waiting for the report job, so that it works all through the run."""
    findings = ["The heart is normal in size.", "The lungs are clear.", "Small left pleural effusion.",
                "Right lower lobe opacity.", "No pneumothorax.", "Sternotomy wires are intact."]
    store = Store(store_url)
    try:
        for n in range(count):
            text = " ".join(findings[(n + i) % len(findings)] for i in range(3))
            record_report(store, ReportRecord(f"bench:{n}", "text", f"1.2.826.0.1.3680043.8.498.{n}", None,
                                              indication="Cough.", findings=text))
    finally:
        store.close()


# ---- senders ------------------------------------------------------------------------------------


def _pynetdicom_sender(port: int, files: list[Path], go, results) -> None:
    go.wait()
    start = time.monotonic()
    try:
        outcomes = send_files("127.0.0.1", port, files, calling_aet="BENCH", timeout=120)
    except AssociationFailed as exc:  # counted as a failed run, rather than leaving the run waiting
        results.put((start, time.monotonic(), 0, Counter({str(exc): len(files)})))
        return
    failures = Counter(f"{o.status:#06x}" if o.status is not None else o.error for o in outcomes if o.status != 0)
    results.put((start, time.monotonic(), sum(o.status == 0 for o in outcomes), failures))


def send_pynetdicom(batches: list[tuple[int, list[Path]]]) -> tuple[float, int, Counter]:
    """One association per (port, files), all at once: (seconds from the first association's start to the
    last one's end, Success count, failures)."""
    context = multiprocessing.get_context("fork")  # the senders start with everything imported
    go, results = context.Barrier(len(batches) + 1), context.Queue()
    senders = [context.Process(target=_pynetdicom_sender, args=(port, files, go, results)) for port, files in batches]
    for sender in senders:
        sender.start()
    go.wait()
    done = [results.get(timeout=600) for _ in senders]
    for sender in senders:
        sender.join()
    seconds = max(end for _, end, _, _ in done) - min(start for start, _, _, _ in done)
    return seconds, sum(n for _, _, n, _ in done), sum((failures for *_, failures in done), Counter())


def send_dcmtk(port: int, folders: list[list[Path]]) -> tuple[float, int, Counter]:
    env = {**os.environ, "TCP_NODELAY": "1"}
    start = time.monotonic()
    senders = [
        subprocess.Popen(
            [find_dcmtk("storescu"), "-aec", "STORESCP", "+sd", "+r", "127.0.0.1", str(port), *map(str, group)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for group in folders
    ]
    codes = [sender.wait(600) for sender in senders]
    seconds = time.monotonic() - start
    files = sum(len(list(Path(folder).rglob("*.dcm"))) for group in folders for folder in group)
    return seconds, 0 if any(codes) else files, Counter(f"storescu exit status {code}" for code in codes if code)


# ---- data and the run ---------------------------------------------------------------------------


def make_data(folder: Path, instances: int, rows: int) -> list[list[Path]]:
    """`instances` brain-MR images (studies of six series), split into PARALLEL folders."""
    from tests.support.dicom_factory import brain_study, write_files

    per_study = 6 * 20
    datasets = []
    while len(datasets) < instances:
        datasets += brain_study(images_per_series=20, rows=rows, patient=f"Bench{len(datasets) // per_study}")
    datasets = datasets[:instances]
    share = -(-instances // PARALLEL)
    return [write_files(datasets[i : i + share], folder / f"part{n}") for n, i in enumerate(range(0, instances, share))]


@functools.cache
def find_dcmtk(tool: str) -> str | None:
    """The DCMTK program `tool` on PATH; pynetdicom installs Python apps of the same names, skip those."""
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        candidate = Path(folder, tool)
        if candidate.is_file() and os.access(candidate, os.X_OK):
            version = subprocess.run([candidate, "--version"], capture_output=True, text=True).stdout
            if "dcmtk" in version.lower():
                return str(candidate)
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def measure(
    receiver: Receiver, parts: list[list[Path]], parallel: bool, workroot: Path, server: str | None
) -> float | None:
    """Instances per second for one receiver, one association or PARALLEL at once; None if any failed."""
    workdir = Path(tempfile.mkdtemp(dir=workroot))
    ports = [free_port() for _ in range(receiver.nodes)]
    store_url = receiver.store_url(workdir, server)
    try:
        processes = receiver.start(ports, workdir, store_url)
        try:
            if receiver.kind == "dcmtk":
                folders = [[files[0].parent] for files in parts] if parallel else [[files[0].parent for files in parts]]
                seconds, succeeded, failures = send_dcmtk(ports[0], folders)
            else:
                batches = parts if parallel else [[path for files in parts for path in files]]
                seconds, succeeded, failures = send_pynetdicom(
                    [(ports[n % len(ports)], files) for n, files in enumerate(batches)]
                )
        finally:
            for process in processes:
                process.send_signal(signal.SIGTERM)
            for process in processes:
                process.wait(60)
        stored = receiver.stored(store_url)
    finally:
        receiver.drop_store(store_url, server)
        shutil.rmtree(workdir, ignore_errors=True)
    sent = sum(len(files) for files in parts)
    if succeeded != sent or stored not in (None, sent):
        print(f"  {succeeded}/{sent} Success ({dict(failures)}), {stored} stored: not counted", file=sys.stderr)
        return None
    return sent / seconds


def table(results: dict[str, dict[bool, list[float]]], receivers: list[Receiver], args, size: int) -> str:
    """The Markdown table; receivers[0] is the bare SCP every ratio is taken against."""

    def median(rates: list[float | None]) -> float | None:
        """None when not measured (one association cannot be split between nodes); nan when every try failed."""
        counted = [rate for rate in rates if rate is not None]
        return statistics.median(counted) if counted else float("nan") if rates else None

    bare = {parallel: median(results[receivers[0].name][parallel]) for parallel in (False, True)}
    lines = [
        f"{args.instances} MR instances of {size / 1024:.0f} KiB (Explicit VR Little Endian), 127.0.0.1, "
        f"median of {args.rounds} rounds; {machine()}.",
        "",
        "| Receiver | 1 association: instances/s | vs bare | 8 associations: instances/s | vs bare |",
        "|---|---:|---:|---:|---:|",
    ]
    for receiver in receivers:
        cells = []
        for parallel in (False, True):
            rate = median(results[receiver.name][parallel])
            cells += ["–", "–"] if rate is None else [f"{rate:.0f}", f"{rate / bare[parallel]:.2f}x"]
        lines.append(f"| {receiver.name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=1000, help="instances per measurement (default 1000)")
    parser.add_argument("--rows", type=int, default=256, help="image rows = columns, 16 bits (default 256)")
    parser.add_argument("--rounds", type=int, default=3, help="repeat everything, report the median (default 3)")
    parser.add_argument("--workdir", type=Path, help="where data and stores go (default: a temporary folder)")
    parser.add_argument("--output", type=Path, help="also write the Markdown table to this file")
    parser.add_argument("--no-dcmtk", action="store_true", help="leave out DCMTK even when it is installed")
    parser.add_argument("--only", action="append", metavar="TEXT",
                        help="only the receivers whose name contains TEXT (repeatable); the bare SCP always runs")
    parser.add_argument("--postgres", metavar="URL",
                        help="a PostgreSQL server (postgresql+psycopg://user@host:port/postgres) for the PostgreSQL "
                        "rows; each measurement makes a database of its own there and drops it")
    parser.add_argument("--bare-scp", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.bare_scp:
        return run_bare_scp(args.bare_scp)

    receivers = [
        Receiver("bare pynetdicom SCP (handler returns Success)", "bare"),
        Receiver("slmnode, metadata only (row committed before Success)", "node", "metadata"),
        Receiver("slmnode, files + metadata (fsync'd file and row)", "node", "files"),
        Receiver("slmnode, metadata only, synchronous=normal (row committed, no fsync)", "node", "metadata", "normal"),
        Receiver("slmnode, files + metadata, synchronous=normal (fsync'd file, row not)", "node", "files", "normal"),
        Receiver("slmnode, metadata only, report job with a backlog, yielding to ingest (default)", "node", "metadata",
                 report_backlog=REPORT_BACKLOG),
        Receiver("slmnode, metadata only, report job with a backlog, not yielding (ingest_quiet_seconds 0)", "node",
                 "metadata", report_backlog=REPORT_BACKLOG, ingest_quiet_seconds=0.0),
    ]
    if args.postgres:
        receivers += [
            Receiver("slmnode, metadata only, PostgreSQL (row committed before Success)", "node", "metadata",
                     postgres=True),
            Receiver("two slmnode nodes, metadata only, one PostgreSQL database (4 associations each)", "node",
                     "metadata", postgres=True, nodes=2),
        ]
    if not args.no_dcmtk and find_dcmtk("storescu") and find_dcmtk("storescp"):
        receivers.append(Receiver("DCMTK storescu -> storescp --ignore (native reference)", "dcmtk"))
    if args.only:
        receivers = [receivers[0]] + [r for r in receivers[1:] if any(text in r.name for text in args.only)]
    workroot = Path(tempfile.mkdtemp(prefix="slmnode-bench-", dir=args.workdir))
    try:
        parts = make_data(workroot / "data", args.instances, args.rows)
        size = parts[0][0].stat().st_size
        results = {r.name: {False: [], True: []} for r in receivers}
        for round_number in range(1, args.rounds + 1):
            for receiver in receivers:
                for parallel in (False, True) if receiver.nodes == 1 else (True,):
                    rate = measure(receiver, parts, parallel, workroot, args.postgres)
                    results[receiver.name][parallel].append(rate)
                    print(
                        f"round {round_number}: {receiver.name}, {PARALLEL if parallel else 1} association(s): "
                        + ("failed" if rate is None else f"{rate:.0f} instances/s"),
                        file=sys.stderr,
                    )
    finally:
        shutil.rmtree(workroot, ignore_errors=True)
    markdown = table(results, receivers, args, size)
    print(markdown)
    if args.output:
        args.output.write_text(markdown)


if __name__ == "__main__":
    main()
