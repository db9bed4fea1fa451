"""A real Orthanc (Debian's orthanc, orthanc-python) on loopback ports for the integration tests, with its
own configuration and storage in the test's folder; tests skip, saying why, where it is not installed."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.support.helpers_dicom import free_port

PYTHON_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancPython.so")
requires_orthanc = pytest.mark.skipif(
    shutil.which("Orthanc") is None, reason="Orthanc is not installed (apt-get install orthanc; .ci/run does)"
)
requires_orthanc_python = pytest.mark.skipif(
    shutil.which("Orthanc") is None or not PYTHON_PLUGIN.is_file(),
    reason="Orthanc's Python plugin is not installed (apt-get install orthanc orthanc-python; .ci/run does)",
)
START_SECONDS = 60  # the plugin imports slmnode (pydantic, SQLAlchemy, pydicom) before Orthanc answers


class Orthanc:
    """Orthanc with `configuration` merged over loopback ports and a storage folder in `folder`."""

    def __init__(self, folder: Path, configuration: dict | None = None):
        self.folder = folder
        self.http_port, self.dicom_port = free_port(), free_port()
        self.configuration = {
            "Name": "slmnode-test",
            "StorageDirectory": str(folder / "storage"),
            "IndexDirectory": str(folder / "storage"),
            "HttpPort": self.http_port,
            "DicomPort": self.dicom_port,
            "DicomAet": "ORTHANC",
            "RemoteAccessAllowed": False,  # HTTP from 127.0.0.1 only
            "AuthenticationEnabled": False,
            **(configuration or {}),
        }
        self.process: subprocess.Popen | None = None
        self.log = folder / "orthanc.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self) -> Orthanc:
        config = self.folder / "orthanc.json"
        config.write_text(json.dumps(self.configuration))
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(["Orthanc", str(config)], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                self.call("GET", "/system")
                return self
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise AssertionError(f"Orthanc did not start:\n{self.log_text()[-3000:]}")

    def stop(self, seconds: float = 30) -> int | None:
        """SIGTERM and wait; Orthanc's exit status."""
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(seconds)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError("Orthanc did not stop within %s s of SIGTERM" % seconds) from None

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.is_file() else ""

    def call(self, method: str, path: str, body: bytes | None = None) -> bytes:
        request = urllib.request.Request(self.url + path, data=body, method=method)
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.read()

    def upload(self, paths) -> None:
        for path in paths:
            self.call("POST", "/instances", Path(path).read_bytes())

    def series_metadata(self, series_uid: str, name: str) -> str | None:
        found = json.loads(self.call("POST", "/tools/lookup", series_uid.encode()))
        try:
            return self.call("GET", f"/series/{found[0]['ID']}/metadata/{name}").decode()
        except urllib.error.HTTPError:
            return None

    def __enter__(self) -> Orthanc:
        return self.start()

    def __exit__(self, *_exc) -> None:
        self.stop()
