"""The DICOM service: a C-ECHO and C-STORE SCP that records every received instance in the store.

Written like pynetdicom's storescp app: one AE, small handler functions bound to events, status codes
with names. The C-STORE handler reads the dataset's header (header.py decodes only the tags the store
keeps; pixel data, compressed or not, is never decoded), writes the file in "files" mode (files.py),
and answers Success only after Store.record_instance has committed the instance's row (and, for a
text SR, record_report the report it carries), so every acknowledged instance survives a crash;
anything else gets a failure status, a log line without patient identifiers, and the association
goes on.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from enum import IntEnum

from pydicom.dataset import Dataset
from pynetdicom import ALL_TRANSFER_SYNTAXES, AE, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import Verification

from dicom_node.config import Settings
from dicom_node.dicom.audit import AssociationAudit
from dicom_node.dicom.files import instance_path, remove_partial_writes, write_atomically
from dicom_node.dicom.header import InstanceRecord, MissingTag, Unreadable, read_header
from dicom_node.dicom.network import NODELAY_HANDLERS, quiet_dicom_libraries, server_tls_context
from dicom_node.dicom.server import ConnectionGuard, GuardedAssociationServer
from dicom_node.dicom.status import StoreStatus
from dicom_node.reports.sr import TEXT_SR_CLASSES, report_from_sr
from dicom_node.store.database import Store
from dicom_node.store.reports import record_report
from dicom_node import metrics

log = logging.getLogger(__name__)


# ---- who may associate ------------------------------------------------------------------------


REJECTED_PERMANENT, REJECTED_TRANSIENT = 0x01, 0x02
SERVICE_USER, SERVICE_PROVIDER = 0x01, 0x03  # the latter: presentation related
LOCAL_LIMIT_EXCEEDED = 0x02  # a diagnostic of that service provider


class RejectReason(IntEnum):
    """A-ASSOCIATE-RJ diagnostics of the service user (PS3.8 9.3.4)."""

    NO_REASON_GIVEN = 0x01
    CALLING_AE_NOT_RECOGNIZED = 0x03
    CALLED_AE_NOT_RECOGNIZED = 0x07


def handle_association_request(
    event: evt.Event,
    allowed_aes: list[str],
    allowed_addresses: list[str],
    guard: ConnectionGuard,
    called_ae: str | None = None,
) -> None:
    """EVT_REQUESTED: reject a peer that is not on the allow-lists, or (with `called_ae`, from
    dicom.check_called_ae) that addresses another AE title than ours, with the reason DICOM has for it;
    and one that finds every association slot taken (transient: it may try again later)."""
    calling_ae = event.assoc.requestor.primitive.calling_ae_title
    called = event.assoc.requestor.primitive.called_ae_title.strip()
    address = event.assoc.requestor.address
    if called_ae is not None and called != called_ae:
        why = f"called AE {called!r} is not ours ({called_ae})"
        reject = (REJECTED_PERMANENT, SERVICE_USER, RejectReason.CALLED_AE_NOT_RECOGNIZED)
    elif allowed_aes and calling_ae not in allowed_aes:
        why = "calling AE not recognized"
        reject = (REJECTED_PERMANENT, SERVICE_USER, RejectReason.CALLING_AE_NOT_RECOGNIZED)
    elif allowed_addresses and address not in allowed_addresses:
        # DICOM has no diagnostic for an address
        why, reject = "address not allowed", (REJECTED_PERMANENT, SERVICE_USER, RejectReason.NO_REASON_GIVEN)
    elif not guard.associate((address, event.assoc.requestor.port)):
        why, reject = "every association slot is taken", (REJECTED_TRANSIENT, SERVICE_PROVIDER, LOCAL_LIMIT_EXCEEDED)
    else:
        return
    log.warning("Rejected association from %s calling as %r: %s", address, calling_ae, why)
    reason = reject[2]  # /metrics labels it by DICOM's name for it
    metrics.association_rejected(event, reason.name.lower() if isinstance(reason, RejectReason) else "local_limit_exceeded")
    event.assoc.acse.send_reject(*reject)
    # Returns once the A-ASSOCIATE-RJ has gone out and the peer has closed the connection.
    event.assoc.kill()


# ---- C-STORE: header, record, file, commit, status --------------------------------------------


def handle_store(event: evt.Event, store: Store, settings: Settings) -> int:
    """EVT_C_STORE: record the instance, write its file in "files" mode, answer once committed."""
    transfer_syntax = event.context.transfer_syntax
    where = f"instance {event.request.AffectedSOPInstanceUID} from {event.assoc.requestor.ae_title}"
    try:
        header = read_header(event.request.DataSet, transfer_syntax, settings.dicom.max_inflated_megabytes * 2**20)
        record = InstanceRecord.from_dataset(
            header, transfer_syntax, keep_patient_identifiers=settings.store.keep_patient_identifiers
        )
        record = dataclasses.replace(record, calling_ae=event.assoc.requestor.ae_title.strip() or None)
    except MissingTag as exc:
        log.warning("Refused %s: %s", where, _loggable(exc))
        return _failure(StoreStatus.DOES_NOT_MATCH_SOP_CLASS, str(exc))  # the comment says which UID
    except Exception as exc:  # whatever pydicom raises on a malformed dataset
        log.warning("Refused %s: cannot decode the dataset: %s", where, _loggable(exc))
        return StoreStatus.CANNOT_UNDERSTAND
    try:
        if settings.storage.mode == "files":
            path = instance_path(settings.storage.folder, record)
            write_atomically(path, event.encoded_dataset(include_meta=True))
            record = dataclasses.replace(record, file_path=str(path))
        is_new = store.record_instance(record)
        if record.sop_class_uid in TEXT_SR_CLASSES:
            _record_report(header, store, settings, where)
    except Exception as exc:
        log.error("Could not store %s: %s", where, _loggable(exc))
        return StoreStatus.OUT_OF_RESOURCES
    if log.isEnabledFor(logging.DEBUG):
        log.debug("Stored %s%s", where, "" if is_new else " (already stored)")
    return StoreStatus.SUCCESS


def _failure(status: StoreStatus, comment: str) -> Dataset:
    """A failure status with its Error Comment (0000,0902): the sender sees why, not only the code's name."""
    response = Dataset()
    response.Status, response.ErrorComment = int(status), comment[:64]  # LO: 64 characters
    return response


def _record_report(header: Dataset, store: Store, settings: Settings, where: str) -> None:
    """Store the report a text SR carries, committed before the SR is acknowledged. Also done for an SR
    already stored, so a resend completes a report whose first attempt failed (report_key dedups)."""
    report = report_from_sr(header, keep_patient_identifiers=settings.store.keep_patient_identifiers)
    if report is None:
        log.warning("No report text in %s: stored as an instance only", where)
    else:
        record_report(store, report)


def _loggable(exc: Exception) -> str:
    """Why something failed, without values from the dataset (they may identify the patient)."""
    if isinstance(exc, (Unreadable, MissingTag)):
        return str(exc)
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    # SQLAlchemy errors carry the statement's parameters; the driver's message does not.
    return str(getattr(exc, "orig", None) or type(exc).__name__)


# ---- serving ----------------------------------------------------------------------------------


def make_ae(settings: Settings) -> AE:
    """The node's AE: every storage SOP class in every transfer syntax pynetdicom knows, plus Verification."""
    dicom = settings.dicom
    ae = AE(ae_title=dicom.ae_title)
    for context in AllStoragePresentationContexts:
        ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
    ae.add_supported_context(Verification, ALL_TRANSFER_SYNTAXES)
    # The ConnectionGuard counts slots from the association request on; pynetdicom's own count would
    # also hold every connection that has not asked yet, so it must never be the one to refuse.
    ae.maximum_associations = 1_000_000
    ae.network_timeout = dicom.network_timeout
    ae.acse_timeout = dicom.acse_timeout  # also pynetdicom's ARTIM timer
    return ae


def start_scp(settings: Settings, store: Store) -> GuardedAssociationServer:
    """Start serving in background threads; `.server_address` has the bound port, `.shutdown()` stops."""
    quiet_dicom_libraries()
    dicom = settings.dicom
    ssl_context = server_tls_context(dicom.tls) if dicom.tls.enabled else None
    if settings.storage.mode == "files":
        removed = remove_partial_writes(settings.storage.folder)
        log.info("Removed %d partly written file(s) left in %s by a stopped node", removed, settings.storage.folder)
    guard = ConnectionGuard(dicom.max_associations, dicom.max_pending_connections)
    audit = AssociationAudit()
    handlers = [
        *NODELAY_HANDLERS,
        *audit.handlers(),
        (
            evt.EVT_REQUESTED,
            handle_association_request,
            [dicom.allowed_calling_aes, dicom.allowed_addresses, guard,
             dicom.ae_title if dicom.check_called_ae else None],
        ),
        (evt.EVT_C_STORE, audit.counting(metrics.observed(handle_store)), [store, settings]),
        (evt.EVT_ACCEPTED, metrics.association_accepted),
        (evt.EVT_REJECTED, metrics.association_rejected_by_pynetdicom),
    ]
    ae = make_ae(settings)
    server = ae.make_server(
        (dicom.bind_address, dicom.port),
        ssl_context=ssl_context,
        evt_handlers=handlers,
        server_class=GuardedAssociationServer,
    )
    server.guard, server.acse_timeout = guard, dicom.acse_timeout
    # What AE.start_server(block=False) does, with our server class: serve in a thread, and let the AE
    # know the server (its shutdown removes itself from that list).
    threading.Thread(target=server.serve_forever, name="AcceptorServer", daemon=True).start()
    ae._servers.append(server)
    return server
