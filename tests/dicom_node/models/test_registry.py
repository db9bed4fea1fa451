"""The model registry: versions, promotions, rollbacks (also through the CLI), and a rollback that
gives a running node's descriptions back the previous version's labels."""

from __future__ import annotations

import json
import time

import pytest
from click.testing import CliRunner
from tests.support.databases import store_url
from tests.support.dicom_factory import mr_instance
from pydicom.uid import ExplicitVRLittleEndian
from sqlalchemy import select

from dicom_node.store import mappings as queries
from dicom_node.models import registry
from dicom_node.cli.main import cli
from dicom_node.node import Node
from dicom_node.dicom.header import InstanceRecord
from dicom_node.store.tables import Promotion
from tests.support.helpers_dicom import node_settings
from slm.engine import load_engine

DESCRIPTIONS = ["t1_mprage_sag", "AX T2 FSE", "Ax FLAIR", "ep2d_diff_b1000 TRACEW", "dADC", "SWI_mIP", "Localizer",
                "sag 3D T1 post", "cor t2 stir", "ax gre", "FIESTA", "perfusion"]


def register_three(store):
    for n in (1, 2, 3):
        assert registry.register(store, f"v{n}-abc", f"/models/v{n}", metrics={"figures": {"harmonization_accuracy": n / 10}})


def test_register_is_idempotent_by_version_and_nothing_is_active_at_first(store):
    assert registry.active(store) is None
    assert registry.register(store, "v1-abc", "/models/v1", note="first")
    assert not registry.register(store, "v1-abc", "/elsewhere", note="again")
    (only,) = registry.versions(store)
    assert (only.version, only.path, only.note, only.active, only.promoted_at) == ("v1-abc", "/models/v1", "first", False, None)


def test_promotions_and_rollbacks_walk_the_history_back(store):
    register_three(store)
    for n in (1, 2, 3):
        assert registry.promote(store, f"v{n}-abc", who="ana")
    assert not registry.promote(store, "v3-abc", who="ana")  # already active: no new row
    assert registry.active(store).version == "v3-abc"
    assert registry.rollback(store, who="ben") == "v2-abc"
    assert registry.rollback(store, who="ben", note="v2 too") == "v1-abc"  # back, not to and fro between v2 and v3
    assert registry.active(store).version == "v1-abc"
    with pytest.raises(registry.RegistryError, match="nothing to roll back to"):
        registry.rollback(store, who="ben")
    with store.engine.connect() as conn:
        history = conn.execute(select(Promotion.action, Promotion.who).order_by(Promotion.id)).all()
    assert [tuple(row) for row in history] == [("promote", "ana")] * 3 + [("rollback", "ben")] * 2
    # A promotion after rollbacks goes on the stack like any other.
    registry.promote(store, "v3-abc", who="ana")
    assert registry.rollback(store, who="ben") == "v1-abc"
    assert [v.active for v in registry.versions(store)] == [True, False, False]


def test_unknown_versions_and_an_empty_history_are_clear_errors(store):
    with pytest.raises(registry.RegistryError, match="nothing to roll back: no version was ever promoted"):
        registry.rollback(store, who="ben")
    register_three(store)
    with pytest.raises(registry.RegistryError, match="no model version 'v9'"):
        registry.promote(store, "v9", who="ana")
    with pytest.raises(registry.RegistryError, match="begins 3 versions"):
        registry.get(store, "v")
    assert registry.get(store, "v2").version == "v2-abc"


def cli_runner(tmp_path, store="store", **sections):
    """`slmnode --config <store in tmp_path + sections> ...`, returning the click result."""
    config = {"store": {"url": store_url(tmp_path, store)}, **sections}
    (tmp_path / "node.json").write_text(json.dumps(config))  # JSON is YAML

    def run(*args):
        return CliRunner().invoke(cli, ["--config", str(tmp_path / "node.json"), *args])

    return run


def test_models_commands(tmp_path, store):
    slmnode = cli_runner(tmp_path)
    listed = slmnode("models", "list")
    assert listed.exit_code == 0 and "no model versions registered yet" in listed.output
    refused = slmnode("models", "rollback")
    assert refused.exit_code == 1 and "nothing to roll back" in refused.output and "Traceback" not in refused.output
    register_three(store)
    assert "is now active" in slmnode("models", "promote", "v1", "--who", "ana").output
    promoted = slmnode("models", "promote", "v2-a", "--note", "better on dev")
    assert promoted.exit_code == 0 and "v2-abc is now active" in promoted.output
    assert "already the active version" in slmnode("models", "promote", "v2-abc").output
    unknown = slmnode("models", "promote", "v9")
    assert unknown.exit_code == 1 and "no model version 'v9'" in unknown.output
    table = slmnode("models", "list").output.splitlines()
    assert table[0].split() == ["version", "active", "created", "promoted", "figures", "gate", "note"]
    assert [line.split()[0] for line in table[2:]] == ["v1-abc", "v2-abc", "v3-abc"]
    assert ["yes" in line.split() for line in table[2:]] == [False, True, False]
    assert "never" in table[4] and "harm 0.300" in table[4]
    rows = json.loads(slmnode("models", "list", "--format", "json").output)
    assert [(r["version"], r["active"]) for r in rows] == [("v1-abc", False), ("v2-abc", True), ("v3-abc", False)]
    assert rows[2]["promoted_at"] is None and rows[0]["metrics"]["figures"]["harmonization_accuracy"] == 0.1
    rolled = slmnode("models", "rollback", "--who", "ben")
    assert rolled.exit_code == 0 and "v1-abc is active again" in rolled.output


# ---- a rollback on a running node ----------------------------------------------------------------


def wait_until(condition, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def model_labels(store) -> dict[str, tuple[str | None, str | None]]:
    """description -> (model label, model version), once every description is mapped; else {}."""
    found = queries.mappings(store.engine)
    if any(m.status != "mapped" for m in found):
        return {}
    return {m.description: (m.model_label, m.model_version) for m in found}


@pytest.mark.slow  # a node, two models, a promotion, a rollback and reharmonizing after each
def test_rollback_restores_the_previous_versions_predictions(tmp_path, tiny_model_folders):
    folders = tiny_model_folders
    v1, v2 = (load_engine(str(folder), device="cpu") for folder in folders)
    expected = {engine.version: dict(zip(DESCRIPTIONS, (p.label for p in engine.harmonize(DESCRIPTIONS))))
                for engine in (v1, v2)}
    assert expected[v1.version] != expected[v2.version], "the two tiny models must disagree somewhere"

    settings = node_settings(tmp_path, model={"device": "cpu"}, retraining={"follow_seconds": 0.1},
                             reports={"interval_seconds": 0})
    slmnode = cli_runner(tmp_path, "node", model={"device": "cpu"})  # the node's store
    with Node(settings, v1, v1) as node:
        for number, description in enumerate(DESCRIPTIONS, start=1):
            instance = mr_instance(description, series_number=number)
            node.store.record_instance(InstanceRecord.from_dataset(instance, ExplicitVRLittleEndian))
        wait_until(lambda: model_labels(node.store))
        assert model_labels(node.store) == {d: (label, v1.version) for d, label in expected[v1.version].items()}

        for engine, folder in zip((v1, v2), folders):
            registry.register(node.store, engine.version, str(folder))
        assert slmnode("models", "promote", v1.version).exit_code == 0
        assert slmnode("models", "promote", v2.version).exit_code == 0
        wait_until(lambda: node.model_version == v2.version)
        requeued = slmnode("reharmonize")
        assert requeued.exit_code == 0 and f"{len(DESCRIPTIONS)} queued again" in requeued.output
        wait_until(lambda: {v for _, v in model_labels(node.store).values()} == {v2.version})
        assert model_labels(node.store) == {d: (label, v2.version) for d, label in expected[v2.version].items()}

        rolled = slmnode("models", "rollback", "--note", "v2 is worse")
        assert rolled.exit_code == 0 and f"{v1.version} is active again" in rolled.output
        wait_until(lambda: node.model_version == v1.version)
        assert node.worker.harmonizer.version == v1.version
        assert "0 queued again" not in slmnode("reharmonize").output
        wait_until(lambda: {v for _, v in model_labels(node.store).values()} == {v1.version})
        assert model_labels(node.store) == {d: (label, v1.version) for d, label in expected[v1.version].items()}
        assert "0 queued again" in slmnode("reharmonize").output  # everything is mapped by the active version
        assert f"{len(DESCRIPTIONS)} queued again" in slmnode("reharmonize", "--all").output


def test_serve_starts_from_the_active_version_and_reharmonize_names_a_model_it_cannot_load(tmp_path, store):
    from dicom_node.models import choose

    settings = node_settings(tmp_path, store={"url": store_url(tmp_path)})
    assert choose.stored_choice(settings) == choose.Choice(settings.model)  # nothing promoted: model.path as configured
    register_three(store)
    registry.promote(store, "v2-abc", who="ana")
    chosen = choose.stored_choice(settings).model
    assert (chosen.path, chosen.adapter) == ("/models/v2", None)

    slmnode = cli_runner(tmp_path, "other", model={"path": str(tmp_path / "no-model")}, harmonizer={"kind": "slm"})
    refused = slmnode("reharmonize")
    assert refused.exit_code == 1 and "cannot tell which model the node runs" in refused.output
    assert "Traceback" not in refused.output
