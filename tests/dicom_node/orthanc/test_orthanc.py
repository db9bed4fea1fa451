"""slmnode with a real Orthanc on 127.0.0.1: as a sidecar (Orthanc forwards, slmnode writes the labels back as
metadata) and as a plugin inside Orthanc (Orthanc stores, slmnode's store has the study harmonized)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import yaml

from dicom_node.node import Node
from dicom_node.store.corrections import correct
from dicom_node.store.database import Store
from slm.rules import RuleHarmonizer
from tests.support.dicom_factory import brain_study, write_files
from tests.support.helpers_dicom import node_settings, stored_instances
from tests.support.orthanc import Orthanc, requires_orthanc, requires_orthanc_python
from tests.support.paths import ROOT

# The sidecar's Orthanc side, as README's "With Orthanc" gives it: every instance Orthanc receives goes on to slmnode.
FORWARD_LUA = """
function OnStoredInstance(instanceId, tags, metadata, origin)
   if origin['RequestOrigin'] ~= 'Lua' then
      SendToModality(instanceId, 'slmnode')
   end
end
"""
LABELS = {"t1_mprage_sag_p2_iso": "T1", "t2_tse_tra_512": "T2", "t2_tirm_tra_dark-fluid": "FLAIR",
          "ep2d_diff_3scan_trace_p2": "DWI", "ep2d_diff_3scan_trace_p2_ADC": "ADC", "swi_tra_p2": "SWI"}


def wait_for(condition, seconds: float = 30) -> bool:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.2)
    return condition()


@requires_orthanc
def test_sidecar_orthanc_forwards_a_study_and_gets_the_labels_back_as_metadata(tmp_path):
    study = brain_study(images_per_series=2)
    paths = write_files(study, tmp_path / "in")
    series = {ds.SeriesInstanceUID: LABELS[ds.SeriesDescription] for ds in study}
    (tmp_path / "orthanc").mkdir()
    (tmp_path / "forward.lua").write_text(FORWARD_LUA)
    orthanc = Orthanc(tmp_path / "orthanc", {"LuaScripts": [str(tmp_path / "forward.lua")],
                                             "UserMetadata": {"SeriesClass": 1024}})
    settings = node_settings(tmp_path, orthanc={"url": orthanc.url, "poll_seconds": 0.2})
    with Node(settings, RuleHarmonizer()) as node:
        orthanc.configuration["DicomModalities"] = {"slmnode": ["SLMNODE", "127.0.0.1", node.port]}
        with orthanc:
            orthanc.upload(paths)
            assert wait_for(lambda: len(stored_instances(node)) == len(study))
            assert {row.description for row in stored_instances(node).values()} == set(LABELS)

            def labels_in_orthanc():
                return {uid: orthanc.series_metadata(uid, "SeriesClass") for uid in series}

            assert wait_for(lambda: labels_in_orthanc() == series), labels_in_orthanc()
            # A correction reaches Orthanc too.
            correct(node.store, "t2_tse_tra_512", "FLAIR", who="test")
            t2 = next(uid for uid, label in series.items() if label == "T2")
            assert wait_for(lambda: orthanc.series_metadata(t2, "SeriesClass") == "FLAIR")


def plugin_configuration(node_yaml) -> dict:
    """What `slmnode --config node_yaml orthanc-plugin` prints, run as a user would (this checkout's slmnode)."""
    printed = subprocess.run(
        [sys.executable, "-m", "dicom_node.cli", "--config", str(node_yaml), "orthanc-plugin"],
        capture_output=True, text=True, check=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    return json.loads(printed.stdout)


@pytest.mark.slow  # Orthanc imports slmnode at its start (about 8 s on 2 cores)
@requires_orthanc_python
def test_plugin_orthanc_stores_a_study_and_slmnodes_store_has_it_harmonized(tmp_path):
    """And the label writer inside Orthanc writes the labels into Orthanc's metadata."""
    study = brain_study(images_per_series=2)
    paths = write_files(study, tmp_path / "in")
    (tmp_path / "orthanc").mkdir()
    orthanc = Orthanc(tmp_path / "orthanc", {"UserMetadata": {"SeriesClass": 1024}})
    node_yaml = tmp_path / "node.yaml"
    url = f"sqlite:///{tmp_path / 'node.sqlite'}"
    node_yaml.write_text(yaml.safe_dump({
        "store": {"url": url},
        "harmonizer": {"kind": "rules", "poll_seconds": 0.2},
        "reports": {"interval_seconds": 0},
        "orthanc": {"url": orthanc.url, "poll_seconds": 0.2},  # the labels written back into this Orthanc too
    }))
    orthanc.configuration.update(plugin_configuration(node_yaml))
    orthanc.start()
    try:
        orthanc.upload(paths)
        store = Store(url)
        try:
            def harmonized():
                rows = stored_instances(store)
                return len(rows) == len(study) and all(
                    label is not None for label in _labels(store).values()
                )

            assert wait_for(harmonized), orthanc.log_text()[-3000:]
            assert _labels(store) == LABELS
            series = {ds.SeriesInstanceUID: LABELS[ds.SeriesDescription] for ds in study}
            assert wait_for(lambda: {uid: orthanc.series_metadata(uid, "SeriesClass") for uid in series} == series)
        finally:
            store.close()
    finally:
        status = orthanc.stop()
    # ORTHANC_STOPPED stopped slmnode's threads, and Orthanc exited cleanly.
    assert status == 0
    assert "slmnode plugin stopped" in orthanc.log_text()


def _labels(store: Store) -> dict:
    from dicom_node.store.mappings import mappings

    return {mapping.description: mapping.label for mapping in mappings(store.engine)}


@pytest.mark.slow
@requires_orthanc_python
def test_plugin_with_another_python_says_so_in_orthancs_log(tmp_path):
    node_yaml = tmp_path / "node.yaml"
    node_yaml.write_text(yaml.safe_dump({"store": {"url": f"sqlite:///{tmp_path / 'node.sqlite'}"}}))
    configuration = plugin_configuration(node_yaml)
    configuration["SlmNode"]["PythonVersion"] = "3.10"  # as if slmnode had been installed with Python 3.10
    (tmp_path / "orthanc").mkdir()
    orthanc = Orthanc(tmp_path / "orthanc", configuration)
    try:
        orthanc.start()
    except AssertionError:
        pass  # Orthanc may refuse to start without its plugin: either way, the log says why
    finally:
        orthanc.stop()
    assert "but slmnode was installed for Python 3.10" in orthanc.log_text()
    assert not (tmp_path / "node.sqlite").exists()  # nothing of slmnode ran
