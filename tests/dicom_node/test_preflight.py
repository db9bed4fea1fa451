"""`slmnode serve` stops at once, with the setting to fix, when the node could not work: before any
model loads (torch is made unimportable in these runs) and before the store is created."""

import socket
import subprocess
import sys

import pytest
import yaml

from tests.support.paths import ROOT

NO_TORCH = (
    "import sys; sys.modules['torch'] = None; sys.modules['transformers'] = None; "  # any model load would fail
    "from dicom_node.cli.main import main; sys.argv[0] = 'slmnode'; main()"
)


def serve(tmp_path, config: dict) -> subprocess.CompletedProcess:
    (tmp_path / "node.yaml").write_text(yaml.safe_dump(config))
    return subprocess.run(
        [sys.executable, "-c", NO_TORCH, "--config", str(tmp_path / "node.yaml"), "serve"],
        cwd=tmp_path, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    "config, message",
    [
        ({"storage": {"mode": "files", "folder": "afile/received"}}, "storage.folder: cannot write in {tmp}/afile/received"),
        ({"retraining": {"models_folder": "afile/models"}}, "retraining.models_folder: {tmp}/afile is a file, not a folder"),
        ({"model": {"path": "no-such-model-folder/"}}, "model.path: no-such-model-folder/ is neither a model folder"),
        ({"model": {"path": "./models/v1"}}, "model.path: {tmp}/models/v1 is neither a model folder (no such folder)"),
        ({"model": {"adapter": "lora"}}, "model.adapter: no LoRA adapter folder {tmp}/lora"),
        ({"dicom": {"tls": {"enabled": True, "certificate": "c.pem", "private_key": "k.pem"}}},
         "dicom.tls: cannot load certificate or key"),
    ],
    ids=["storage", "models-folder", "model-id", "model-folder", "adapter", "tls"],
)
def test_each_problem_stops_the_node_with_its_setting_before_any_model_loads(tmp_path, config, message):
    (tmp_path / "afile").write_text("a file where a folder should be")
    config = {"dicom": {"bind_address": "127.0.0.1", "port": 0, **config.get("dicom", {})},
              **{k: v for k, v in config.items() if k != "dicom"}}
    result = serve(tmp_path, config)
    assert result.returncode == 1, result.stderr
    assert "Error: cannot start the node:" in result.stderr and message.format(tmp=tmp_path) in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "slmnode.sqlite").exists()


def test_a_port_in_use_is_named(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = serve(tmp_path, {"dicom": {"bind_address": "127.0.0.1", "port": port}})
    assert result.returncode == 1
    assert f"dicom.port: cannot listen on 127.0.0.1:{port}: Address already in use" in result.stderr
    assert not (tmp_path / "slmnode.sqlite").exists()


def test_the_hl7_and_web_ports_in_use_are_named_when_enabled(tmp_path):
    with socket.socket() as hl7, socket.socket() as web:
        for taken in (hl7, web):
            taken.bind(("127.0.0.1", 0))
            taken.listen(1)
        (hl7_port, web_port) = (hl7.getsockname()[1], web.getsockname()[1])
        result = serve(tmp_path, {"dicom": {"bind_address": "127.0.0.1", "port": 0},
                                  "hl7": {"enabled": True, "port": hl7_port},
                                  "web": {"enabled": True, "port": web_port}})
    assert result.returncode == 1
    assert f"hl7.port: cannot listen on 127.0.0.1:{hl7_port}: Address already in use" in result.stderr
    assert f"web.port: cannot listen on 127.0.0.1:{web_port}: Address already in use" in result.stderr
    assert not (tmp_path / "slmnode.sqlite").exists()


def test_every_problem_is_listed_at_once(tmp_path):
    result = serve(tmp_path, {"dicom": {"bind_address": "127.0.0.1", "port": 0},
                              "model": {"path": "/nowhere/model"}, "model_": {}})
    assert result.returncode == 1 and "model_: unknown key (did you mean model?)" in result.stderr
    result = serve(tmp_path, {"dicom": {"bind_address": "127.0.0.1", "port": 0}, "model": {"path": "/nowhere/model",
                              "adapter": "/nowhere/lora"}})
    assert "model.path: /nowhere/model" in result.stderr and "model.adapter: no LoRA adapter folder /nowhere/lora" in result.stderr
