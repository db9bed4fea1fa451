"""What `slmnode serve` checks before it loads any model: a node that cannot work must not say "ready".

Loading a model takes seconds; a port in use (DICOM, and HL7 and web when enabled), a storage or models
folder the node cannot write, a model path that is neither a folder nor a hub id, or TLS files that do not
load must stop the node at once, each named with the setting to fix, and leave nothing behind (the store
is not opened yet).
"""

from __future__ import annotations

import os
import re
import socket
import tempfile
from pathlib import Path

from dicom_node.config import ConfigError, Settings

# A Hugging Face hub id: "name" or "owner/name", letters, digits, ".", "_", "-".
HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")


class StartError(Exception):
    """The node cannot work as configured; the message lists every reason, one a line."""


def check(settings: Settings) -> None:
    """Raise StartError naming every problem found; see the module docstring."""
    problems = [
        problem
        for problem in (
            _storage(settings),
            _writable_later(settings.retraining.models_folder, "retraining.models_folder"),
            _model_path(settings.model.path),
            _adapter(settings.model.adapter),
            _tls(settings),
            _port("dicom", settings.dicom.bind_address, settings.dicom.port, "another slmnode or DICOM service"),
            settings.hl7.enabled and _port("hl7", settings.hl7.bind_address, settings.hl7.port, "another HL7 listener"),
            settings.web.enabled and _port("web", settings.web.bind_address, settings.web.port, "another web server"),
        )
        if problem
    ]
    if problems:
        raise StartError("cannot start the node:\n" + "\n".join(f"  {problem}" for problem in problems))


def check_web(settings: Settings) -> None:
    """`slmnode web` alone: raise StartError if it cannot listen on web.port, naming the setting."""
    problem = _port("web", settings.web.bind_address, settings.web.port, "another web server")
    if problem:
        raise StartError(f"cannot start the web server:\n  {problem}")


def _storage(settings: Settings) -> str | None:
    """files mode: the storage folder exists (made now) and takes a file, as every instance will."""
    if settings.storage.mode != "files":
        return None
    folder = Path(settings.storage.folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        return f"storage.folder: cannot write in {folder.resolve()}: {exc.strerror or exc}"
    return None


def _writable_later(folder: str, setting: str) -> str | None:
    """A folder the node writes to later (made then): it, or the nearest folder above it that exists, is writable."""
    path = Path(folder).resolve()
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        return f"{setting}: {existing} is a file, not a folder (for {path})"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{setting}: cannot write in {existing} (for {path})"
    return None


def _model_path(path: str) -> str | None:
    if path == "embedded" or Path(path).is_dir():
        return None
    if Path(path).is_absolute() or path.startswith(".") or not HUB_ID.match(path):
        return (
            f"model.path: {path} is neither a model folder (no such folder) nor a Hugging Face hub id "
            "(name or owner/name); \"embedded\" is the model that ships with slmnode"
        )
    return None


def _adapter(adapter: str | None) -> str | None:
    if adapter is None or Path(adapter).is_dir():
        return None
    return f"model.adapter: no LoRA adapter folder {adapter}"


def _tls(settings: Settings) -> str | None:
    if not settings.dicom.tls.enabled:
        return None
    from dicom_node.dicom.network import server_tls_context

    try:
        server_tls_context(settings.dicom.tls)
    except ConfigError as exc:
        return str(exc)
    return None


def _port(section: str, address: str, port: int, who: str) -> str | None:
    """Can the node listen there (`section`'s port: DICOM, and HL7 and the web when enabled)? Bound as
    pynetdicom binds (SO_REUSEADDR), then let go at once."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address, port))
            sock.listen(1)  # a port in use by a listener fails here on some systems, not at bind
        except OSError as exc:
            return (
                f"{section}.port: cannot listen on {address}:{port}: {exc.strerror or exc} "
                f"({who} there? set {section}.port or {section}.bind_address)"
            )
    return None
