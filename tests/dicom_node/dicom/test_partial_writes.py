"""A node killed while writing a file (files mode) leaves a temporary file; the next start removes it."""

from __future__ import annotations

import logging

from tests.support.helpers_dicom import start_node


def test_files_left_half_written_are_removed_at_start(tmp_path, caplog):
    series = tmp_path / "received" / "1.2.3" / "1.2.3.4"
    series.mkdir(parents=True)
    partial = [series / ".incoming-k2j4x9.tmp", tmp_path / "received" / ".incoming-a1b2c3.tmp"]
    for path in partial:
        path.write_bytes(b"DICM, cut short")
    kept = [series / "1.2.3.4.5.dcm", series / "notes.tmp", series / ".incoming-but-not-temporary.dcm"]
    for path in kept:
        path.write_bytes(b"whole")

    with caplog.at_level(logging.INFO, logger="dicom_node.dicom.scp"):
        with start_node(tmp_path, storage={"mode": "files"}):
            pass

    assert [path.exists() for path in partial] == [False, False]
    assert [path.read_bytes() for path in kept] == [b"whole"] * 3
    assert "Removed 2 partly written file(s)" in caplog.text


def test_metadata_mode_leaves_the_folder_alone(tmp_path):
    leftover = tmp_path / "received" / ".incoming-k2j4x9.tmp"
    leftover.parent.mkdir()
    leftover.write_bytes(b"not ours to touch")
    with start_node(tmp_path, storage={"mode": "metadata"}):
        pass
    assert leftover.exists()
