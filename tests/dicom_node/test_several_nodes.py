"""Several nodes on one PostgreSQL database: two `slmnode serve` processes started together on an empty
database, receiving the same and different instances over several associations, sharing the
harmonization queue, the report job and the model registry; then one is killed (SIGKILL) mid-stream.

Every instance acknowledged with Success must be stored once, every description harmonized once and
every report processed once per model version (counted from both nodes' logs), a promotion made
through one node must be followed by both, and the survivor must go on receiving.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from sqlalchemy import select

from dicom_node.cli.main import cli
from dicom_node.dicom.sender import send_files
from dicom_node.models import registry
from dicom_node.reports.record import ReportRecord
from dicom_node.store.database import Store
from dicom_node.store.reports import record_report
from dicom_node.store.tables import Description, ReportResult
from slm.engine import load_engine
from tests.support.databases import store_url
from tests.support.dicom_factory import mr_instance, write_files
from tests.support.helpers_dicom import TIMEOUT, answering, free_port, serve_process, stored_instances, wait_for
from tests.support.store_counts import count_instances, count_queued

STUDY = "1.2.826.0.1.3680043.8.498.77"  # the studies' UIDs begin so
PER_SERIES = 8
REPORTS = 6


def node_config(path: Path, port: int, url: str, model_folder: Path) -> Path:
    settings = {
        "dicom": {"bind_address": "127.0.0.1", "port": port, "network_timeout": TIMEOUT},
        "storage": {"mode": "metadata"},
        "store": {"url": url},
        "model": {"path": str(model_folder), "device": "cpu", "impression_max_tokens": 8},
        # A short claim: the killed node's claimed descriptions come due to the other within the test.
        "harmonizer": {"kind": "slm", "poll_seconds": 0.2, "claim_seconds": 3},
        "reports": {"interval_seconds": 1, "ingest_quiet_seconds": 0.2, "batch_size": 2, "queue_size": 2},
        "retraining": {"follow_seconds": 0.5},
    }
    path.write_text(yaml.safe_dump(settings))
    return path


def series(folder: Path, descriptions: list[str], study_uid: str) -> tuple[list[Path], list]:
    """PER_SERIES instances of one series per description, written to `folder`."""
    datasets = []
    for number, description in enumerate(descriptions, start=1):
        first = mr_instance(description, study_uid=study_uid, series_number=number)
        datasets += [first] + [
            mr_instance(description, study_uid=study_uid, series_uid=first.SeriesInstanceUID,
                        series_number=number, instance_number=n)
            for n in range(2, PER_SERIES + 1)
        ]
    return write_files(datasets, folder), datasets


def send_at_once(jobs: list[tuple[int, list[Path]]], **options) -> list[list]:
    """One association per (port, files), all at once; each one's outcomes."""
    outcomes: list[list] = [[] for _ in jobs]

    def send(k, port, paths):
        outcomes[k] = send_files("127.0.0.1", port, paths, timeout=TIMEOUT, **options)

    threads = [threading.Thread(target=send, args=(k, *job)) for k, job in enumerate(jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return outcomes


def logged(log: Path, pattern: str) -> list[re.Match]:
    return list(re.finditer(pattern, log.read_text()))


def harmonized(logs: list[Path]) -> int:
    return sum(int(m[1]) for log in logs for m in logged(log, r"harmonized (\d+) of \d+ queued descriptions with"))


def reports_processed(logs: list[Path], version: str) -> int:
    pattern = rf"report job \(model {re.escape(version)}\): (\d+) of \d+ claimed reports processed"
    return sum(int(m[1]) for log in logs for m in logged(log, pattern))


def results_of(store: Store, version: str) -> list[int]:
    with store.engine.connect() as conn:
        return list(conn.scalars(select(ReportResult.report_id).where(ReportResult.model_version == version)))


def descriptions_of(store: Store) -> dict[str, str | None]:
    with store.engine.connect() as conn:
        return dict(conn.execute(select(Description.text, Description.model_version)).all())


@pytest.mark.slow  # two nodes in their own processes, each loading a model; a kill
def test_two_nodes_on_one_postgresql_database(tmp_path, postgres_server, tiny_model_folders):
    url = store_url(tmp_path, "shared")
    ports = free_port(), free_port()
    configs = [node_config(tmp_path / f"{name}.yaml", port, url, tiny_model_folders[0])
               for name, port in zip("ab", ports)]
    logs = [config.with_suffix(".log") for config in configs]
    nodes = [serve_process(config) for config in configs]  # together, on an empty database
    store = None
    try:
        nodes = [answering(node, config, port) for node, config, port in zip(nodes, configs, ports)]
        store = Store(url)
        v1, v2 = (load_engine(str(folder), device="cpu").version for folder in tiny_model_folders)
        for n in range(REPORTS):
            record_report(store, ReportRecord(f"text:r{n}", "text", f"1.2.826.0.1.3680043.8.498.{900 + n}", None,
                                              findings=f"Case {n}: small left pleural effusion."))

        # The same and different instances, two associations per node, all at once.
        descriptions = [f"t2_tse_tra_{n}" for n in range(12)]
        paths, datasets = series(tmp_path / "in", descriptions, STUDY + ".1")
        only_a, only_b, both = (paths[k * 4 * PER_SERIES : (k + 1) * 4 * PER_SERIES] for k in range(3))
        halves = lambda files: (files[::2], files[1::2])  # noqa: E731
        outcomes = send_at_once([(ports[0], half) for half in halves(only_a + both)]
                                + [(ports[1], half) for half in halves(only_b + both)])
        assert [o.status for sent in outcomes for o in sent] == [0] * (len(paths) + len(both))
        stored = stored_instances(store)
        assert count_instances(store) == len(stored) == len(paths)
        assert {uid: row.description for uid, row in stored.items()} == {
            ds.SOPInstanceUID: ds.SeriesDescription for ds in datasets
        }

        # Each description harmonized once, by one node or the other; each report processed once.
        # (Each node logs a batch once it is committed: wait for the logs.)
        assert wait_for(lambda: harmonized(logs) >= len(descriptions) and reports_processed(logs, v1) >= REPORTS, 60)
        assert descriptions_of(store) == dict.fromkeys(descriptions, v1)
        assert harmonized(logs) == len(descriptions) and count_queued(store) == 0
        assert len(set(results_of(store, v1))) == len(results_of(store, v1)) == REPORTS
        assert reports_processed(logs, v1) == REPORTS

        # A model promoted through one node's configuration: both switch, and v2 reads every report once.
        for version, folder in zip((v1, v2), tiny_model_folders):
            registry.register(store, version, str(folder))
        promoted = CliRunner().invoke(cli, ["--config", str(configs[0]), "models", "promote", v2])
        assert promoted.exit_code == 0, promoted.output
        assert wait_for(lambda: all(logged(log, f"switched to model {re.escape(v2)}") for log in logs), 30)
        assert wait_for(lambda: reports_processed(logs, v2) >= REPORTS, 60)
        assert len(set(results_of(store, v2))) == len(results_of(store, v2)) == reports_processed(logs, v2) == REPORTS

        # Node a killed (SIGKILL) while both receive: what it acknowledged is stored, b goes on.
        to_a, sent_to_a = series(tmp_path / "to-a", [f"ax_flair_{n}" for n in range(30)], STUDY + ".2")
        to_b, sent_to_b = series(tmp_path / "to-b", [f"ax_dwi_{n}" for n in range(10)], STUDY + ".3")
        sop_uid = {path: ds.SOPInstanceUID for path, ds in zip(to_a + to_b, sent_to_a + sent_to_b)}
        acknowledged, b_outcomes = [], []
        streams = [
            threading.Thread(target=send_files, args=("127.0.0.1", ports[0], to_a), kwargs={
                "timeout": TIMEOUT, "on_outcome": lambda o: o.status == 0 and acknowledged.append(o.path)}),
            threading.Thread(target=send_files, args=("127.0.0.1", ports[1], to_b[::2]), kwargs={
                "timeout": TIMEOUT, "on_outcome": b_outcomes.append}),
        ]
        for stream in streams:
            stream.start()
        assert wait_for(lambda: len(acknowledged) >= 40, 60), f"the stream to node a stalled at {len(acknowledged)}"
        nodes[0].kill()
        nodes[0].wait()
        for stream in streams:
            stream.join(TIMEOUT * 3)  # pynetdicom notices a dead peer only when a response is TIMEOUT late
        assert len(acknowledged) < len(to_a), "node a died after its stream ended"
        b_outcomes += send_files("127.0.0.1", ports[1], to_b[1::2], timeout=TIMEOUT)  # after the kill
        assert [o.status for o in b_outcomes] == [0] * len(to_b)
        stored = stored_instances(store)
        assert {sop_uid[path] for path in acknowledged + to_b} <= set(stored)
        assert count_instances(store) == len(stored)
        # What node a had claimed comes due to node b: every description gets mapped, by v2.
        assert wait_for(lambda: count_queued(store) == 0, 30)
        assert {version for text, version in descriptions_of(store).items() if text.startswith("ax_")} == {v2}
    finally:
        for node in nodes:
            node.kill()
            node.wait()
        if store is not None:
            store.close()
