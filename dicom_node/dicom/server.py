"""The listening port, so that no peer can stall it or use up its association slots before it says who it is.

pynetdicom's AssociationServer runs the TLS handshake in its accept thread with no timeout (one idle
socket stops the port), and counts every open connection against `maximum_associations` for as long
as its thread lives (about 30 s for a peer that sent junk and left). Here:

- the accept thread only accepts; each connection's own thread does the TLS handshake, under
  `dicom.acse_timeout`, and then waits that long at most for a whole A-ASSOCIATE-RQ PDU (a plain
  connection that sends anything else, or closes, is hung up at once) before pynetdicom serves it;
- a connection is `pending` until its whole association request has arrived; at most
  `dicom.max_pending_connections` are pending at once, and a new one hangs up the oldest (a sender
  asks within milliseconds of connecting, a flood's idle sockets never do);
- a slot of `dicom.max_associations` is taken at the association request, after the allow-lists, and
  given back when the connection closes.
"""

from __future__ import annotations

import logging
import select
import socket
import ssl
import threading
import time
from collections import OrderedDict

from pynetdicom.transport import RequestHandler, ThreadedAssociationServer

log = logging.getLogger(__name__)

A_ASSOCIATE_RQ = b"\x01"  # the PDU type an association must start with (PS3.8 9.3.2)
PDU_HEADER = 6  # type, reserved, 4-byte length
REQUEST_PEEK = 64 * 1024  # an A-ASSOCIATE-RQ is a few KB; waited for whole up to this much
Peer = tuple[str, int]  # (address, port) of one connection


def _hang_up(sock: socket.socket) -> None:
    """Close the connection under whichever thread is reading it: a blocked recv returns at once.
    socket.socket.shutdown, not SSLSocket's, which would also drop the TLS state that thread uses."""
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:  # already closed
        pass


class ConnectionGuard:
    """Which connections are pending (connected, no association request yet) and which hold a slot."""

    def __init__(self, max_associations: int, max_pending: int):
        self.max_associations = max_associations
        self.max_pending = max_pending
        self._lock = threading.Lock()
        self._pending: OrderedDict[Peer, socket.socket] = OrderedDict()  # oldest first
        self._associated: set[Peer] = set()

    def admit(self, peer: Peer, sock: socket.socket) -> None:
        """A new connection; the oldest pending one is hung up if there are too many."""
        with self._lock:
            while len(self._pending) >= self.max_pending:
                oldest, oldest_sock = self._pending.popitem(last=False)
                log.warning("Closed a connection from %s that sent no association request: too many pending", oldest[0])
                _hang_up(oldest_sock)
            self._pending[peer] = sock

    def replace(self, peer: Peer, sock: socket.socket) -> None:
        """The connection's socket is now `sock` (its TLS wrapper), which is what to hang up."""
        with self._lock:
            if peer in self._pending:
                self._pending[peer] = sock

    def asked(self, peer: Peer) -> None:
        """The peer's association request has arrived: no longer one to hang up for a newer connection."""
        with self._lock:
            self._pending.pop(peer, None)

    def associate(self, peer: Peer) -> bool:
        """The peer asked for an association: take a slot, False if none is free."""
        with self._lock:
            if len(self._associated) >= self.max_associations:
                return False
            self._associated.add(peer)
            return True

    def close(self, peer: Peer) -> None:
        with self._lock:
            self._pending.pop(peer, None)
            self._associated.discard(peer)

    def hang_up_pending(self) -> None:
        with self._lock:
            for sock in self._pending.values():
                _hang_up(sock)

    @property
    def counts(self) -> tuple[int, int]:
        """(pending, associated), for tests and logs."""
        with self._lock:
            return len(self._pending), len(self._associated)


class GuardedAssociationServer(ThreadedAssociationServer):
    """pynetdicom's threaded server with the accept path above; `guard` and `acse_timeout` are set
    by start_scp before it serves."""

    request_queue_size = 128  # listen backlog (socketserver's default is 5): bursts wait in the kernel
    # Shutting down does not wait for associations in progress, as with pynetdicom's own server (whose
    # connection threads end once the association's thread has started).
    block_on_close = False
    guard: ConnectionGuard
    acse_timeout: float

    def get_request(self) -> tuple[socket.socket, Peer]:
        sock, address = self.socket.accept()
        self.guard.admit(address[:2], sock)
        return sock, address

    def process_request_thread(self, request: socket.socket, client_address) -> None:
        peer = client_address[:2]
        try:
            if self.ssl_context:
                request = self._handshake(request, peer)
            if request is not None and self._asks_to_associate(request, peer):
                super().process_request_thread(request, client_address)
        finally:
            self.guard.close(peer)

    def finish_request(self, request: socket.socket, client_address) -> None:
        """Serve the association, and return only when it has ended, so that the guard's close comes then."""
        _AssociationHandler(request, client_address, self).assoc.join()

    def service_actions(self) -> None:
        """Nothing. pynetdicom's runs a full gc.collect() every 60 connections: under a flood of junk
        connections that is a stop of every thread (the GIL held) once a second. Python's own collector
        still frees what the ended associations leave in reference cycles."""

    def server_close(self) -> None:
        """Stop: pending connections are hung up, so that their threads end now."""
        self.guard.hang_up_pending()
        super().server_close()

    def _handshake(self, sock: socket.socket, peer: Peer) -> ssl.SSLSocket | None:
        tls = None
        try:
            tls = self.ssl_context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
            self.guard.replace(peer, tls)
            tls.settimeout(self.acse_timeout)
            tls.do_handshake()
        except (OSError, ValueError) as exc:  # ssl.SSLError and socket.timeout are OSErrors
            log.info("TLS handshake with %s failed: %s", peer[0], getattr(exc, "reason", None) or exc)
            self.shutdown_request(tls or sock)
            return None
        tls.settimeout(None)
        return tls

    def _asks_to_associate(self, sock: socket.socket, peer: Peer) -> bool:
        """Wait, in this thread and without polling, until the peer's whole A-ASSOCIATE-RQ PDU has arrived
        (its first REQUEST_PEEK bytes if it is longer): False, and hung up, if something else came, or
        nothing within acse_timeout. pynetdicom then gets only peers that asked; every connection it
        serves costs two threads that poll the socket every millisecond. Under TLS the bytes cannot be
        peeked at: it is enough that something arrived after the handshake."""
        deadline = time.monotonic() + self.acse_timeout
        try:
            if isinstance(sock, ssl.SSLSocket):
                asked = bool(sock.pending() or select.select([sock], [], [], self.acse_timeout)[0])
            else:
                header = _peek(sock, PDU_HEADER, deadline)
                asked = header[:1] == A_ASSOCIATE_RQ and len(header) == PDU_HEADER
                if asked:
                    whole = min(PDU_HEADER + int.from_bytes(header[2:6], "big"), REQUEST_PEEK)
                    asked = len(_peek(sock, whole, deadline)) == whole
        except OSError:  # timed out, reset, hung up by the guard
            asked = False
        if asked:
            self.guard.asked(peer)
        else:
            log.info("Closed a connection from %s that sent no association request", peer[0])
            self.shutdown_request(sock)
        return asked


def _peek(sock: socket.socket, size: int, deadline: float) -> bytes:
    """The first `size` bytes waiting on `sock`, left there; fewer if the peer closed. SO_RCVLOWAT makes
    the kernel wake this thread only once `size` bytes are there."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, size)
    sock.settimeout(max(deadline - time.monotonic(), 0.001))
    try:
        return sock.recv(size, socket.MSG_PEEK)
    finally:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, 1)
        sock.settimeout(None)


class _AssociationHandler(RequestHandler):
    """pynetdicom's handler (create the association, start its thread), keeping the association."""

    def _create_association(self):
        self.assoc = super()._create_association()
        return self.assoc
