"""Received instances as files ("files" mode): one path per instance, written so that a power cut
leaves either nothing or the whole file, never half of one the sender was told is stored."""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

from dicom_node.dicom.header import InstanceRecord

# A file being written in "files" mode, until its rename; one left behind was never acknowledged.
PARTIAL_PREFIX, PARTIAL_SUFFIX = ".incoming-", ".tmp"


# A UID as PS3.5 9.1 writes it: numbers separated by dots (64 characters at most, checked in header.py).
CONFORMING_UID = re.compile(r"[0-9]+(\.[0-9]+)*")


def instance_path(folder: str | os.PathLike, record: InstanceRecord) -> Path:
    """<folder>/<StudyUID>/<SeriesUID>/<SOPInstanceUID>.dcm, each UID as it is when it conforms."""
    return Path(folder, _name(record.study_uid), _name(record.series_uid), _name(record.sop_instance_uid) + ".dcm")


def _name(uid: str) -> str:
    """A conforming UID as it is; any other has what is not a digit or a dot replaced (so that it cannot
    climb out of the folder: "..", "/") and a hash of the whole UID added (so that "7.7a" and "7.7b",
    both "7.7_", keep files of their own)."""
    if CONFORMING_UID.fullmatch(uid):
        return uid
    digest = hashlib.sha256(uid.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{re.sub(r'[^0-9.]', '_', uid).strip('.') or '_'}-{digest}"


def write_atomically(path: Path, data: bytes) -> None:
    """Write `data` so that `path` holds either nothing or all of it, on disk, even after a power cut."""
    _make_folders(path.parent)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=PARTIAL_PREFIX, suffix=PARTIAL_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)  # the rename is durable only once the folder's entry is on disk


def remove_partial_writes(folder: str | os.PathLike) -> int:
    """Delete the temporary files that a kill in the middle of write_atomically left under `folder`;
    how many there were. Their instances were never acknowledged, so the senders send them again."""
    removed = 0
    for parent, _folders, names in os.walk(folder):
        for name in names:
            if name.startswith(PARTIAL_PREFIX) and name.endswith(PARTIAL_SUFFIX):
                Path(parent, name).unlink(missing_ok=True)
                removed += 1
    return removed


def _make_folders(folder: Path) -> None:
    """Create `folder` and its missing parents, each new one's entry made durable in its parent."""
    missing = []
    while not folder.is_dir():
        missing.append(folder)
        folder = folder.parent
    for new in reversed(missing):
        try:
            new.mkdir()
        except FileExistsError:  # another association created it meanwhile
            continue
        _fsync_folder(new.parent)


def _fsync_folder(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
