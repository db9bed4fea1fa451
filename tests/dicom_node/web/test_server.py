"""The web server as it runs: inside the node (web.enabled), alone as `slmnode web` in its own process,
with HTTPS when web.tls names a certificate and key; and a clear error for a TLS setting that cannot work."""

from __future__ import annotations

import signal
import ssl
import subprocess
import sys
import time

import httpx
import pytest
import yaml

from dicom_node.config import ConfigError
from dicom_node.store.database import Store
from dicom_node.store.users import add_user
from dicom_node.web.app import WebServer
from tests.support.helpers_dicom import TIMEOUT, free_port
from tests.support.web import PASSWORD, web_settings


def test_slmnode_web_serves_the_store_alone_until_sigterm(tmp_path):
    port = free_port()
    settings = web_settings(tmp_path, web={"port": port})
    store = Store(settings.store.url)
    add_user(store, "vic", "viewer", PASSWORD)
    store.close()
    config = tmp_path / "node.yaml"
    config.write_text(yaml.safe_dump({"store": {"url": settings.store.url}, "web": {"port": port}}))
    web = subprocess.Popen([sys.executable, "-m", "dicom_node.cli", "--config", str(config), "web"],
                           stderr=subprocess.PIPE)
    try:
        deadline, answer = time.monotonic() + 60, None
        while answer is None and time.monotonic() < deadline and web.poll() is None:
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=TIMEOUT)
            except httpx.ConnectError:
                time.sleep(0.2)
        assert answer is not None and answer.json() == {"status": "ok"}, web.stderr.read1().decode() if web.poll() else ""
        token = httpx.post(f"http://127.0.0.1:{port}/api/v1/token", json={"name": "vic", "password": PASSWORD},
                           timeout=TIMEOUT).json()["token"]
        node = httpx.get(f"http://127.0.0.1:{port}/api/v1/node", headers={"Authorization": f"Bearer {token}"},
                         timeout=TIMEOUT).json()
        assert node["dicom"]["running"] is False
    finally:
        web.send_signal(signal.SIGTERM)
        assert web.wait(TIMEOUT) == 0


def test_https_with_the_configured_certificate(tmp_path, pki):
    certificate, key = pki["server"]
    settings = web_settings(tmp_path, web={"tls": {"certificate": certificate, "private_key": key}})
    store = Store(settings.store.url)
    with WebServer(settings, store) as server:
        assert server.url.startswith("https://127.0.0.1:")
        assert httpx.get(f"{server.url}/healthz", verify=ssl.create_default_context(cafile=pki["ca"]), timeout=TIMEOUT).json() == {"status": "ok"}
        with pytest.raises(httpx.RemoteProtocolError):  # the port speaks HTTPS only
            httpx.get(server.url.replace("https", "http") + "/healthz", timeout=TIMEOUT)
    store.close()


@pytest.mark.parametrize("tls, words", [
    ({"certificate": "cert.pem"}, "web.tls needs both certificate and private_key"),
    ({"certificate": "nowhere.pem", "private_key": "nowhere.key"}, "web.tls.certificate: nowhere.pem not found"),
])
def test_tls_settings_that_cannot_work_are_a_config_error(tmp_path, tls, words):
    settings = web_settings(tmp_path, web={"tls": tls})
    store = Store(settings.store.url)
    with pytest.raises(ConfigError, match=words):
        WebServer(settings, store)
    store.close()


def test_slmnode_web_on_a_port_in_use_names_the_setting(tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        config = tmp_path / "node.yaml"
        config.write_text(yaml.safe_dump({"web": {"port": port}}))
        web = subprocess.run([sys.executable, "-m", "dicom_node.cli", "--config", str(config), "web"],
                             capture_output=True, text=True, timeout=60)
    assert web.returncode == 1 and "Traceback" not in web.stderr
    assert f"web.port: cannot listen on 127.0.0.1:{port}: Address already in use" in web.stderr
