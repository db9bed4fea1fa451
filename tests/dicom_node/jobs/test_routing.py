"""Routing by harmonized class: a node with a rule forwards the matching series, once, to a second SCP."""

from __future__ import annotations

import json
import time
from collections import Counter

import pytest
import yaml
from click.testing import CliRunner

from dicom_node.cli.main import cli
from dicom_node.config import ConfigError, Settings, load_settings
from dicom_node.dicom.sender import send_files
from dicom_node.node import Node
from dicom_node.store import routes
from dicom_node.store.corrections import correct
from slm.rules import RuleHarmonizer
from tests.support.destination import Destination
from tests.support.dicom_factory import brain_study, ct_instance, write_files
from tests.support.helpers_dicom import TIMEOUT, free_port, node_settings

DWI_ADC = ("ep2d_diff_3scan_trace_p2", "ep2d_diff_3scan_trace_p2_ADC")


def routing(port: int, **when) -> dict:
    rule = {"name": "stroke", "when": when, "send_to": {"ae_title": "DEST", "host": "127.0.0.1", "port": port}}
    return {"rules": [rule], "poll_seconds": 0.1, "retry_seconds": 0.2, "max_retry_seconds": 0.5}


def start_router(tmp_path, port: int, **when) -> Node:
    settings = node_settings(tmp_path, storage={"mode": "files"}, routing=routing(port, **when))
    return Node(settings, RuleHarmonizer()).start()


def wait_for(condition, seconds: float = TIMEOUT) -> bool:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)
    return condition()


def mixed_study(tmp_path):
    """The brain study (T1, T2, FLAIR, DWI, ADC, SWI; 2 images each) and a head CT of the same study."""
    study = brain_study(images_per_series=2)
    study.append(ct_instance(study_uid=study[0].StudyInstanceUID))
    paths = write_files(study, tmp_path / "in")
    wanted = {ds.SOPInstanceUID for ds in study if ds.SeriesDescription in DWI_ADC}
    return paths, wanted


def send(node: Node, paths) -> None:
    outcomes = send_files("127.0.0.1", node.port, paths, calling_aet="SCANNER1", called_aet="SLMNODE")
    assert all(outcome.stored for outcome in outcomes)


def test_a_rule_forwards_only_the_dwi_and_adc_series_of_a_mixed_study(tmp_path):
    paths, wanted = mixed_study(tmp_path)
    with Destination() as destination, start_router(tmp_path, destination.port, labels=["DWI", "ADC"]) as node:
        send(node, paths)
        assert wait_for(lambda: len(destination.received) >= len(wanted))
        time.sleep(0.5)  # several more polls: nothing else may come
        assert Counter(destination.received) == Counter(wanted)
        [route] = routes.summary(node.store.engine)
        assert (route.rule, route.sent, route.pending, route.retrying, route.failed) == ("stroke", 4, 0, 0, 0)
        config = tmp_path / "node.yaml"
        config.write_text(yaml.safe_dump(node.settings.model_dump()))
        shown = CliRunner().invoke(cli, ["--config", str(config), "routes", "--format", "json"])
        assert shown.exit_code == 0, shown.output
        [row] = json.loads(shown.output)
        assert (row["rule"], row["destination"], row["sent"]) == ("stroke", f"DEST@127.0.0.1:{destination.port}", 4)


def test_calling_ae_and_modality_narrow_a_rule(tmp_path):
    paths, wanted = mixed_study(tmp_path)
    with Destination() as destination:
        with start_router(tmp_path, destination.port, labels=["DWI"], calling_aes=["OTHERSCANNER"]) as node:
            send(node, paths)
            assert wait_for(lambda: routes.watermark(node.store.engine).mapped_at is not None)
            time.sleep(0.5)
            assert destination.received == []  # SCANNER1 sent it, the rule asks for OTHERSCANNER


def test_a_correction_into_a_rules_label_forwards_that_series(tmp_path):
    paths, _ = mixed_study(tmp_path)
    with Destination() as destination, start_router(tmp_path, destination.port, labels=["SWI"]) as node:
        send(node, paths)
        assert wait_for(lambda: len(destination.received) == 2)  # the SWI series
        correct(node.store, "t2_tse_tra_512", "SWI", who="test")
        assert wait_for(lambda: len(destination.received) == 4)
        time.sleep(0.3)
        assert len(destination.received) == len(set(destination.received)) == 4


def test_destination_down_then_up_gets_everything_once(tmp_path):
    port = free_port()
    paths, wanted = mixed_study(tmp_path)
    with start_router(tmp_path, port, labels=["DWI", "ADC"]) as node:
        send(node, paths)

        def retrying():
            return any(route.retrying == len(wanted) for route in routes.summary(node.store.engine))

        assert wait_for(retrying)
        [route] = routes.summary(node.store.engine)
        assert "127.0.0.1:%d" % port in route.last_error and route.sent == 0
        with Destination(port) as destination:
            assert wait_for(lambda: len(destination.received) >= len(wanted))
            time.sleep(0.5)
            assert Counter(destination.received) == Counter(wanted)
        [route] = routes.summary(node.store.engine)
        assert (route.sent, route.pending, route.retrying) == (len(wanted), 0, 0)


def test_instances_the_destination_refuses_are_given_up_after_max_attempts(tmp_path):
    paths, wanted = mixed_study(tmp_path)
    with Destination(status=0xA700) as destination:
        rules = routing(destination.port, labels=["DWI", "ADC"]) | {"max_attempts": 2}
        settings = node_settings(tmp_path, storage={"mode": "files"}, routing=rules)
        with Node(settings, RuleHarmonizer()) as node:
            send(node, paths)

            def given_up():
                return [route.failed for route in routes.summary(node.store.engine)] == [len(wanted)]

            assert wait_for(given_up)
            [route] = routes.summary(node.store.engine)
            assert (route.sent, route.pending, route.retrying) == (0, 0, 0)
            assert route.last_error == "destination answered Failure 0xA700 (Refused: Out of Resources)"


def test_routing_needs_files_mode(tmp_path):
    config = tmp_path / "node.yaml"
    config.write_text(
        "routing:\n  rules:\n    - name: stroke\n      when: {labels: [DWI]}\n"
        "      send_to: {ae_title: DEST, host: 127.0.0.1, port: 104}\n"
    )
    with pytest.raises(ConfigError, match="storage.mode: files"):
        load_settings(config)
    with pytest.raises(ValueError, match="unknown labels Diffusion"):
        Settings.model_validate(
            {"storage": {"mode": "files"}, "routing": routing(104, labels=["Diffusion"])}
        )


@pytest.mark.slow  # a node in its own process, killed mid-forward and started again
def test_kill_9_mid_forward_loses_nothing_and_sends_at_most_the_instance_in_flight_twice(tmp_path):
    from tests.dicom_node.test_crash import start_serving
    from tests.support.dicom_factory import mr_instance

    port, count = free_port(), 120
    series = [mr_instance(DWI_ADC[0], instance_number=n) for n in range(count)]
    for ds in series:
        ds.StudyInstanceUID, ds.SeriesInstanceUID = series[0].StudyInstanceUID, series[0].SeriesInstanceUID
    paths = write_files(series, tmp_path / "in")
    with Destination(delay=0.02) as destination:  # slow enough that the kill lands mid-forward
        settings = node_settings(tmp_path, dicom={"port": port}, storage={"mode": "files"},
                                 harmonizer={"kind": "rules", "poll_seconds": 0.1},
                                 routing=routing(destination.port, labels=["DWI"]))
        config = tmp_path / "node.yaml"
        config.write_text(yaml.safe_dump(settings.model_dump()))
        node = start_serving(config, port)
        try:
            assert all(o.stored for o in send_files("127.0.0.1", port, paths, called_aet="SLMNODE"))
            assert wait_for(lambda: len(destination.received) >= count // 3, 60)
            node.kill()
            node.wait()
            assert len(set(destination.received)) < count  # the kill came before the end
            node = start_serving(config, port)
            assert wait_for(lambda: len(set(destination.received)) == count, 60)
            time.sleep(0.5)
        finally:
            node.kill()
            node.wait()
    assert set(destination.received) == {ds.SOPInstanceUID for ds in series}
    # The destination's Success for the instance in flight may have come just before the kill, its commit not.
    assert len(destination.received) - count <= 1
