"""The routing worker: forwards what the routing rules match, from the store's outgoing queue.

The C-STORE handler never sends anything: it stores, and this thread, on its own, queues the instances
of series whose label now matches a rule (store/routes.py) and sends them with the node's sender
(dicom/sender.py), one association per batch. A row is marked sent in its own commit as soon as the
destination answers Success, so a kill -9 can leave at most the instance in flight on each association
sent twice (its Success came, its commit did not); everything else goes exactly once per rule.
"""

from __future__ import annotations

import logging
import socket
from pathlib import Path

from dicom_node.config import RouteRule, RoutingSettings
from dicom_node.dicom.network import client_tls_context
from dicom_node.dicom.sender import AssociationFailed, Outcome, describe_status, send_files
from dicom_node.jobs.polling import PollingThread
from dicom_node.store import routes
from dicom_node.store.database import Store

log = logging.getLogger(__name__)


class RoutingWorker:
    """Queues and sends for every rule of settings.routing; `calling_aet` is the node's AE title.

    `worker_id` names this node's claims (host and AE title by default), so that a restarted node takes
    its own unfinished rows back at once while other nodes on the same database leave them alone.
    """

    def __init__(self, store: Store, settings: RoutingSettings, calling_aet: str, worker_id: str | None = None):
        self.store = store
        self.settings = settings
        self.calling_aet = calling_aet
        self.worker_id = worker_id or f"{socket.gethostname()}:{calling_aet}"
        self._tls = {rule.name: _tls_args(rule) for rule in settings.rules}
        self._seen: routes.Watermark | None = None
        self._thread = PollingThread("routing-worker", self.run_once, settings.poll_seconds)

    def queue_new(self) -> None:
        """Queue what the rules match since the last look: only newer instances when no label changed."""
        now = routes.watermark(self.store.engine)
        if now == self._seen:
            return
        relabeled = self._seen is None or (now.mapped_at, now.correction_id) != (
            self._seen.mapped_at,
            self._seen.correction_id,
        )
        after = 0 if relabeled else self._seen.instance_id
        for rule in self.settings.rules:
            routes.enqueue(self.store, rule, after_instance_id=after)
        self._seen = now

    def run_once(self) -> int:
        """Queue, then send one batch per rule; how many instances the destinations took."""
        self.queue_new()
        return sum(self._send_batch(rule) for rule in self.settings.rules)

    def _send_batch(self, rule: RouteRule) -> int:
        settings = self.settings
        claimed = routes.claim(self.store, rule.name, self.worker_id, settings.batch_size, settings.claim_seconds)
        if not claimed:
            return 0
        missing = [row for row in claimed if not row.file_path or not Path(row.file_path).is_file()]
        if missing:
            routes.record_failure(self.store, missing, "no file: received in metadata mode, or deleted", settings, True)
        by_path = {Path(row.file_path): row for row in claimed if row not in missing}
        sent, refused, settled = 0, [], set()

        def settle(outcome: Outcome) -> None:
            nonlocal sent
            row = by_path[outcome.path]
            settled.add(row.forward_id)
            if outcome.stored:
                routes.mark_sent(self.store, row.forward_id)
                sent += 1
            elif outcome.status is not None or outcome.skipped:
                error = describe_status(outcome.status) if outcome.status is not None else outcome.error
                routes.record_failure(self.store, [row], f"destination answered {error}", settings, refused=True)
                refused.append(row)
            else:  # association lost before its answer: the destination may or may not have it
                routes.record_failure(self.store, [row], outcome.error or "no answer", settings)

        try:
            send_files(
                rule.send_to.host,
                rule.send_to.port,
                list(by_path),
                calling_aet=self.calling_aet,
                called_aet=rule.send_to.ae_title,
                tls=self._tls[rule.name],
                timeout=settings.timeout,
                on_outcome=settle,
            )
        except Exception as exc:  # unreachable, rejected, TLS: what was not settled waits and is tried again
            error = str(exc) if isinstance(exc, AssociationFailed) else f"{type(exc).__name__}: {exc}"
            unsettled = [row for row in by_path.values() if row.forward_id not in settled]
            routes.record_failure(self.store, unsettled, error, settings)
            log.warning("routing rule %s: %s; %d instance(s) wait and are retried", rule.name, error, len(unsettled))
            return sent
        if refused:
            log.warning("routing rule %s: %s refused %d instance(s)", rule.name, routes.destination(rule), len(refused))
        return sent

    def start(self) -> None:
        routes.release_claims(self.store, self.worker_id)
        self._thread.start()

    def stop(self) -> None:
        self._thread.stop()


def _tls_args(rule: RouteRule):
    to = rule.send_to
    if not to.tls:
        return None
    return client_tls_context(to.ca_certificates, to.certificate, to.private_key), to.host
