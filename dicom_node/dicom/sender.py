"""The node's SCU side: C-ECHO and C-STORE of DICOM files to any node, over one association.

Files go on the wire as they are on disk (pynetdicom's chunked send): nothing is decoded or
re-encoded, so compressed and even damaged files arrive byte for byte, as with DCMTK's storescu.
The socket has TCP_NODELAY set, like the node's own.
"""

from __future__ import annotations

import os
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from pydicom.errors import InvalidDicomError
from pynetdicom import AE, evt
from pynetdicom import _config as pynetdicom_config
from pynetdicom.dsutils import split_dataset
from pynetdicom.pdu_primitives import A_ASSOCIATE
from pynetdicom.sop_class import MediaStorageDirectoryStorage, Verification
from pynetdicom.status import (
    GENERAL_STATUS,
    STATUS_SUCCESS,
    STATUS_WARNING,
    STORAGE_SERVICE_CLASS_STATUS,
    code_to_category,
)
from tqdm import tqdm

from dicom_node.dicom.network import NODELAY_HANDLERS, quiet_dicom_libraries

MAX_PRESENTATION_CONTEXTS = 128  # PS3.8: context IDs are odd numbers 1-255

TLSArgs = tuple[ssl.SSLContext, str]  # a client context and the server name to verify


class AssociationFailed(Exception):
    """The peer could not be reached, or rejected or aborted the association."""


@dataclass(frozen=True)
class Outcome:
    """What became of one file: the peer's status (with its Error Comment, if any), or None with the
    reason it was not stored.

    `skipped` files are not DICOM instances (other files, a DICOMDIR): nothing was asked of the peer."""

    path: Path
    status: int | None
    error: str | None = None
    skipped: bool = False

    @property
    def stored(self) -> bool:
        """The peer said it has the instance (Success, or a Warning such as coercion)."""
        return self.status is not None and code_to_category(self.status) in (STATUS_SUCCESS, STATUS_WARNING)


def describe_status(code: int) -> str:
    """'Failure 0xC210 (Cannot Understand)': category, code and meaning, as PS3.4 names them."""
    category = code_to_category(code)
    meaning = (STORAGE_SERVICE_CLASS_STATUS.get(code) or GENERAL_STATUS.get(code) or ("", ""))[1]
    return category if code == 0 else f"{category} 0x{code:04X}" + (f" ({meaning})" if meaning else "")


def find_files(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """The files named, and every file under the folders named, in a stable order."""
    found = []
    for path in map(Path, paths):
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.is_file()))
        else:
            found.append(path)
    return found


def _storage_key(path: Path) -> tuple[str, str] | None:
    """(SOP Class UID, Transfer Syntax UID) from the file meta; None if it is not a DICOM instance."""
    try:
        meta, _ = split_dataset(path)
        key = str(meta.MediaStorageSOPClassUID), str(meta.TransferSyntaxUID)
    except (InvalidDicomError, AttributeError, OSError, EOFError):
        return None
    return None if key[0] == MediaStorageDirectoryStorage else key


class ReactorCheckpoint:
    """What pynetdicom's association reactor waits at (its `_reactor_checkpoint`, a threading.Event
    there), knowing when the reactor is really parked: `pause` returns only then.

    Why: pynetdicom 3.0.4's send_* methods pause the requestor's reactor by clearing the Event and
    waiting for a flag that the reactor sets just before it waits. Right after the previous
    exchange's set(), that flag is still up while a reactor that the scheduler has not run yet is
    about to leave its wait. The next request then goes out, the late reactor takes its response off
    the queue ("Received unexpected C-STORE service message") and drops it, and the sender waits out
    its whole DIMSE timeout and aborts the association. Several associations in one busy process on
    2 cores hit it: the two-node test on PostgreSQL lost a response in 3 of 50 runs before, in none
    of 60 after. `python -m bench.sender` measures the rest against pynetdicom's pause in the same run."""

    ROUND_SECONDS = 0.05  # between sends the reactor comes round at least this often, to see a peer's release or abort

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._open = True
        self._parked = False  # the reactor waits here
        self._let_go = False  # set() has let it go, and it has not left yet
        self._parked_at = 0.0  # time.monotonic() when it last came round

    def is_set(self) -> bool:
        return self._open

    @property
    def parked(self) -> bool:
        """Is the reactor waiting here, and staying?"""
        return self._parked and not self._let_go

    def set(self) -> None:
        with self._changed:
            self._open = self._let_go = True
            self._changed.notify_all()

    def clear(self) -> None:
        with self._changed:
            self._open = False

    def wait(self, timeout: float | None = None) -> bool:
        """The reactor's side: wait while closed, until set() lets it go (as an Event's waiter, even if
        closed again before it ran)."""
        with self._changed:
            if self._open:
                return True
            self._parked, self._let_go, self._parked_at = True, False, time.monotonic()
            self._changed.notify_all()
            let_go = self._changed.wait_for(lambda: self._let_go, timeout)
            self._parked = False
            return let_go

    def pause(self, reactor_running: Callable[[], bool], timeout: float) -> None:
        """Close, and return once the reactor waits here and stays (or has ended, or `timeout` seconds
        passed). A reactor let go but not gone yet is held back if it came round lately; otherwise
        it first comes round (and sees a release or abort by the peer, if any)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            self._open = False
            if self._parked and time.monotonic() - self._parked_at < self.ROUND_SECONDS:
                self._let_go = False
            while not self.parked and reactor_running():
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self._changed.wait(min(left, 0.05))


def _install_checkpoint(event: evt.Event) -> None:
    """EVT_CONN_OPEN handler: our checkpoint in place before the association's reactor first runs."""
    event.assoc._reactor_checkpoint = ReactorCheckpoint()


def _pause_reactor(assoc) -> bool:
    """Park `assoc`'s reactor for one send_* call, which lets it go when done. Is the association
    still up (the reactor has seen any release or abort by the peer)?"""
    assoc._reactor_checkpoint.pause(assoc.is_alive, assoc.dimse_timeout or 30.0)
    return assoc.is_established


def _release(assoc) -> None:
    """Release the association if it is still up (pynetdicom's release pauses the reactor as its send_* do)."""
    if _pause_reactor(assoc):
        assoc.release()


def _application_entity(calling_aet: str, timeout: float) -> AE:
    quiet_dicom_libraries()
    ae = AE(ae_title=calling_aet)
    # connection_timeout also bounds the TLS handshake, which a stalled peer would otherwise hold forever.
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = ae.connection_timeout = timeout
    return ae


def open_association(ae: AE, host: str, port: int, called_aet: str, tls: TLSArgs | None = None):
    """An established association (TCP_NODELAY on its socket), or AssociationFailed saying why not: no
    connection at all, or the peer's rejection with its reason, which an administrator acts on."""
    seen = {}
    handlers = [
        *NODELAY_HANDLERS,
        (evt.EVT_CONN_OPEN, _install_checkpoint),
        (evt.EVT_CONN_OPEN, lambda event: seen.setdefault("connected", True)),
        (evt.EVT_ACSE_RECV, lambda event: seen.__setitem__("answer", event.primitive)),
    ]
    assoc = ae.associate(host, port, ae_title=called_aet, tls_args=tls, evt_handlers=handlers)
    if assoc.is_established:
        return assoc
    if "connected" not in seen:  # with TLS the handshake is part of connecting
        raise AssociationFailed(
            f"cannot connect to {host}:{port} over TLS (nothing listening there, or the TLS handshake failed: "
            "check host, port, the CA and our certificate)" if tls else
            f"cannot connect to {host}:{port} (nothing listening there, or a firewall in between; check host and port)"
        )
    answer = seen.get("answer")
    if assoc.is_rejected and isinstance(answer, A_ASSOCIATE):
        why = f"rejected: {answer.reason_str} ({'permanent' if answer.result == 0x01 else 'transient'})"
    else:
        why = "rejected" if assoc.is_rejected else "aborted" if assoc.is_aborted else "not established"
    raise AssociationFailed(f"association with {called_aet} at {host}:{port} {why}")


def echo(
    host: str,
    port: int,
    *,
    calling_aet: str = "SLMSCU",
    called_aet: str = "ANY-SCP",
    tls: TLSArgs | None = None,
    timeout: float = 30.0,
) -> int | None:
    """C-ECHO the peer; its status (0x0000 is Success), or None if it did not answer."""
    ae = _application_entity(calling_aet, timeout)
    ae.add_requested_context(Verification)
    assoc = open_association(ae, host, port, called_aet, tls)
    try:
        if not _pause_reactor(assoc):
            return None
        response = assoc.send_c_echo()
        return int(response.Status) if "Status" in response else None
    finally:
        _release(assoc)


def wait_until_answering(
    host: str, port: int, seconds: float, still_starting: Callable[[], bool] = lambda: True, **association
) -> bool:
    """True once the node at host:port answers a C-ECHO with Success; False after `seconds`, or as soon
    as `still_starting()` says the node is gone (a process that exited, say)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and still_starting():
        try:
            if echo(host, port, timeout=2, **association) == 0:
                return True
        except AssociationFailed:
            time.sleep(0.2)
    return False


def send_files(
    host: str,
    port: int,
    files: list[Path],
    *,
    calling_aet: str = "SLMSCU",
    called_aet: str = "ANY-SCP",
    tls: TLSArgs | None = None,
    timeout: float = 30.0,
    show_progress: bool = False,
    on_outcome: Callable[[Outcome], None] | None = None,
) -> list[Outcome]:
    """C-STORE `files` over one association, one Outcome per file, in order.

    Files that are not DICOM instances are skipped. If the association is lost midway, the
    files not yet acknowledged get status None: only a returned status says what the peer has.
    """
    keys = {path: _storage_key(path) for path in files}
    contexts = sorted({key for key in keys.values() if key})
    if len(contexts) > MAX_PRESENTATION_CONTEXTS:
        raise AssociationFailed(
            f"{len(contexts)} SOP class / transfer syntax pairs; one association carries at most "
            f"{MAX_PRESENTATION_CONTEXTS}: send fewer kinds of files at a time"
        )
    outcomes = []

    def settle(outcome: Outcome) -> None:
        outcomes.append(outcome)
        if on_outcome:
            on_outcome(outcome)

    ae = _application_entity(calling_aet, timeout)
    for sop_class, transfer_syntax in contexts:
        ae.add_requested_context(sop_class, transfer_syntax)
    # Send each file's bytes as they are instead of decoding and re-encoding it.
    pynetdicom_config.STORE_SEND_CHUNKED_DATASET = True
    assoc = open_association(ae, host, port, called_aet, tls) if contexts else None
    try:
        for path in tqdm(files, unit="file", disable=not show_progress):
            if keys[path] is None:
                settle(Outcome(path, None, "not a DICOM instance", skipped=True))
            elif not _pause_reactor(assoc):
                settle(Outcome(path, None, "association lost"))
            else:
                settle(_store_one(assoc, path))
    finally:
        if assoc is not None:
            _release(assoc)
    return outcomes


def _store_one(assoc, path: Path) -> Outcome:
    try:
        response = assoc.send_c_store(path)
    except (ValueError, AttributeError, OSError) as exc:  # no accepted context, bad meta, unreadable
        return Outcome(path, None, str(exc))
    if "Status" not in response:
        return Outcome(path, None, "no response (association lost or timed out)")
    return Outcome(path, int(response.Status), response.get("ErrorComment"))  # the peer's reason, if it gave one
