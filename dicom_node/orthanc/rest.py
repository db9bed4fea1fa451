"""The few calls of Orthanc's REST API the node makes: find a series by its UID, set its metadata.

urllib from the standard library, so that the plugin and the sidecar need nothing more. Errors come out
as OrthancError with what a PACS administrator can act on, never with a patient's data.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request

from dicom_node.config import OrthancSettings


class OrthancError(Exception):
    """Orthanc could not be reached, or refused a call."""


class OrthancClient:
    def __init__(self, settings: OrthancSettings):
        if not settings.url:
            raise OrthancError("orthanc.url is not set")
        self.url = settings.url.rstrip("/")
        self.timeout = settings.timeout
        self._headers = {}
        if settings.username:
            token = base64.b64encode(f"{settings.username}:{settings.password or ''}".encode()).decode()
            self._headers["Authorization"] = f"Basic {token}"

    def call(self, method: str, path: str, body: bytes | str | None = None) -> bytes:
        data = body.encode() if isinstance(body, str) else body
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=self._headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return response.read()
        except urllib.error.HTTPError as exc:
            raise OrthancError(f"Orthanc at {self.url} answered {method} {path.split('/')[1]}/... with HTTP {exc.code}") from None
        except OSError as exc:  # refused, timed out, name not known
            raise OrthancError(f"cannot reach Orthanc at {self.url}: {getattr(exc, 'reason', exc)}") from None

    def find_series(self, series_uid: str) -> str | None:
        """Orthanc's identifier of the series with this Series Instance UID; None if Orthanc does not have it."""
        found = json.loads(self.call("POST", "/tools/lookup", series_uid))
        return next((item["ID"] for item in found if item.get("Type") == "Series"), None)

    def set_series_metadata(self, orthanc_id: str, name: str, value: str) -> None:
        try:
            self.call("PUT", f"/series/{orthanc_id}/metadata/{name}", value)
        except OrthancError as exc:
            raise OrthancError(
                f"{exc}: is {name!r} declared in Orthanc's configuration (\"UserMetadata\": {{\"{name}\": 1024}})?"
            ) from None
