"""The listening port, so that no peer can stall it or use up its association slots before it says who it is.

pynetdicom's AssociationServer runs the TLS handshake in its accept thread with no timeout (one idle
socket stops the port), and counts every open connection against `maximum_associations` for as long
as its thread lives (about 30 s for a peer that sent junk and left). Here:

- the accept thread only accepts; each connection's own thread does the TLS handshake, under
  `dicom.acse_timeout`, and then waits that long at most for the first byte of an A-ASSOCIATE-RQ PDU
  (a plain connection whose first byte is anything else, or that closes, is hung up at once);
- a connection waits as `pending` until its association request arrives; at most
  `dicom.max_pending_connections` wait at once, and a new one hangs up the oldest (a sender asks
  within milliseconds of connecting, a flood's idle sockets never do);
- a slot of `dicom.max_associations` is taken at the association request, after the allow-lists, and
  given back when the connection closes.
"""

from __future__ import annotations

import logging
import select
import socket
import ssl
import threading
from collections import OrderedDict

from pynetdicom.transport import RequestHandler, ThreadedAssociationServer

log = logging.getLogger(__name__)

A_ASSOCIATE_RQ = b"\x01"  # the PDU type an association must start with (PS3.8 9.3.2)
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

    def associate(self, peer: Peer) -> bool:
        """The peer asked for an association: take a slot, False if none is free."""
        with self._lock:
            if len(self._associated) >= self.max_associations:
                return False
            self._pending.pop(peer, None)
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

    def server_close(self) -> None:
        """Stop: pending connections are hung up rather than waited for (socketserver joins their threads)."""
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
        """Wait for the peer's first byte: False (and hung up) if it is not an A-ASSOCIATE-RQ or none came.
        Under TLS the byte cannot be peeked at; it is enough that something arrived."""
        try:
            if isinstance(sock, ssl.SSLSocket):
                ready = sock.pending() or select.select([sock], [], [], self.acse_timeout)[0]
                first = A_ASSOCIATE_RQ if ready else b""
            else:
                sock.settimeout(self.acse_timeout)
                first = sock.recv(1, socket.MSG_PEEK)
                sock.settimeout(None)
        except OSError:
            first = b""
        if first != A_ASSOCIATE_RQ:
            if first:
                log.info("Closed a connection from %s that did not start with an association request", peer[0])
            self.shutdown_request(sock)
            return False
        return True


class _AssociationHandler(RequestHandler):
    """pynetdicom's handler (create the association, start its thread), keeping the association."""

    def _create_association(self):
        self.assoc = super()._create_association()
        return self.assoc
