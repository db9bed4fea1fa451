"""The node's DICOM service over real associations on 127.0.0.1: what arrives is what the store holds."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import DeflatedExplicitVRLittleEndian, JPEGBaseline8Bit, RLELossless
from pynetdicom import AE
from pynetdicom.dsutils import split_dataset
from pynetdicom.sop_class import Verification

from tests.support.dicom_factory import (
    brain_study,
    ct_instance,
    jpeg_baseline_undecodable,
    mr_instance,
    rle_compressed,
    sr_instance,
    write_files,
)
from dicom_node.dicom.network import client_tls_context
from dicom_node.dicom.sender import AssociationFailed, echo, open_association, send_files
from tests.support.helpers_dicom import TIMEOUT, start_node, stored_instances
from tests.support.store_counts import count_series, count_studies


def statuses(outcomes):
    return [outcome.status for outcome in outcomes]


def test_mr_study_with_ct_and_sr_is_stored(tmp_path):
    study = brain_study(images_per_series=2)
    others = [ct_instance(study_uid=study[0].StudyInstanceUID), sr_instance(study_uid=study[0].StudyInstanceUID)]
    paths = write_files(study + others, tmp_path / "in")
    with start_node(tmp_path) as node:
        assert echo("127.0.0.1", node.port, timeout=TIMEOUT) == 0x0000
        assert statuses(send_files("127.0.0.1", node.port, paths, timeout=TIMEOUT)) == [0x0000] * len(paths)
        stored = stored_instances(node)
        assert count_studies(node.store) == 1
        assert count_series(node.store) == 8
    assert {uid: (row.description, row.modality) for uid, row in stored.items()} == {
        ds.SOPInstanceUID: (ds.SeriesDescription, ds.Modality) for ds in study + others
    }
    assert {row.file_path for row in stored.values()} == {None}  # metadata mode writes no file


def test_compressed_and_deflated_syntaxes_are_stored_without_decoding_pixels(tmp_path):
    deflated = mr_instance("t2_tse_tra_deflated")
    deflated.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    datasets = [rle_compressed(mr_instance("t1_rle")), jpeg_baseline_undecodable(mr_instance("t1_jpeg")), deflated]
    paths = write_files(datasets, tmp_path / "in")
    with start_node(tmp_path) as node:
        assert statuses(send_files("127.0.0.1", node.port, paths, timeout=TIMEOUT)) == [0x0000] * 3
        stored = stored_instances(node)
    assert {uid: (row.description, row.transfer_syntax) for uid, row in stored.items()} == {
        datasets[0].SOPInstanceUID: ("t1_rle", RLELossless),
        datasets[1].SOPInstanceUID: ("t1_jpeg", JPEGBaseline8Bit),
        datasets[2].SOPInstanceUID: ("t2_tse_tra_deflated", DeflatedExplicitVRLittleEndian),
    }


def test_files_mode_keeps_each_instance_byte_for_byte(tmp_path):
    datasets = brain_study(images_per_series=1)[:2] + [rle_compressed(mr_instance("t1_rle"))]
    paths = write_files(datasets, tmp_path / "in")
    with start_node(tmp_path, storage={"mode": "files"}) as node:
        assert statuses(send_files("127.0.0.1", node.port, paths, timeout=TIMEOUT)) == [0x0000] * 3
        stored = stored_instances(node)
    for ds, sent in zip(datasets, paths):
        kept = (tmp_path / "received").joinpath(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID + ".dcm")
        assert stored[ds.SOPInstanceUID].file_path == str(kept)
        assert dataset_bytes(kept) == dataset_bytes(sent)  # the file meta is the node's own
        assert pydicom.dcmread(kept).SOPInstanceUID == ds.SOPInstanceUID
    assert not list((tmp_path / "received").rglob("*.tmp"))


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")
def test_hostile_uids_cannot_write_outside_the_storage_folder(tmp_path):
    ds = mr_instance()
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = "..", "../../etc", "/x/../passwd"
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    paths = write_files([ds], tmp_path / "in")
    with start_node(tmp_path, storage={"mode": "files"}) as node:
        assert statuses(send_files("127.0.0.1", node.port, paths, timeout=TIMEOUT)) == [0x0000]
        (row,) = stored_instances(node).values()
    received = (tmp_path / "received").resolve()
    assert Path(row.file_path).resolve().parent.parent.parent == received
    assert [p.resolve() for p in tmp_path.rglob("*.dcm") if not p.is_relative_to(tmp_path / "in")] == [
        Path(row.file_path).resolve()
    ]


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")
def test_non_conforming_uids_keep_a_file_each(tmp_path):
    uids = ["7.7.7a", "7.7.7b", "7.7.7_", ".", "..", "...", "1.2.3"]
    datasets = []
    for uid in uids:
        ds = mr_instance(f"t1 {uid}", study_uid="7.7", series_uid="7.7.7")
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = uid
        datasets.append(ds)
    paths = write_files(datasets, tmp_path / "in")
    with start_node(tmp_path, storage={"mode": "files"}) as node:
        assert statuses(send_files("127.0.0.1", node.port, paths, timeout=TIMEOUT)) == [0x0000] * len(uids)
        stored = stored_instances(node)
    files = {uid: Path(stored[uid].file_path) for uid in uids}
    assert len(set(files.values())) == len(uids)
    assert files["1.2.3"].name == "1.2.3.dcm"  # a conforming UID is the file's name as it is
    for uid, path in files.items():
        assert path.parent == tmp_path / "received" / "7.7" / "7.7.7"
        assert pydicom.dcmread(path).SOPInstanceUID == uid


def dataset_bytes(path):
    """A DICOM file's encoded dataset, after its preamble and file meta."""
    _, offset = split_dataset(path)
    return path.read_bytes()[offset:]


def rejection(assoc):
    """(result, source, diagnostic) of an A-ASSOCIATE-RJ."""
    primitive = assoc.acceptor.primitive
    return primitive.result, primitive.result_source, primitive.diagnostic


def associate(port, calling_aet="SCANNER1", tls=None, called_aet="ANY-SCP"):
    ae = AE(ae_title=calling_aet)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = TIMEOUT
    ae.add_requested_context(Verification)
    return ae.associate("127.0.0.1", port, tls_args=tls, ae_title=called_aet)


def test_with_check_called_ae_an_association_to_another_ae_title_is_rejected(tmp_path, caplog):
    with start_node(tmp_path, dicom={"ae_title": "SLMNODE", "check_called_ae": True}) as node:
        refused = associate(node.port, called_aet="OTHERPACS")
        assert refused.is_rejected
        assert rejection(refused) == (0x01, 0x01, 0x07)  # permanent, service user, called AE not recognized
        assert "called AE 'OTHERPACS' is not ours (SLMNODE)" in caplog.text
        allowed = associate(node.port, called_aet="SLMNODE")
        assert allowed.is_established
        allowed.release()
    with start_node(tmp_path) as node:  # off by default: scanners often send whatever they were set up with
        anyone = associate(node.port, called_aet="OTHERPACS")
        assert anyone.is_established
        anyone.release()


def test_calling_ae_not_on_the_allow_list_is_rejected_with_that_reason(tmp_path):
    with start_node(tmp_path, dicom={"allowed_calling_aes": ["SCANNER1", "PACS"]}) as node:
        refused = associate(node.port, calling_aet="INTRUDER")
        assert refused.is_rejected
        assert rejection(refused) == (0x01, 0x01, 0x03)  # permanent, service user, calling AE not recognized
        allowed = associate(node.port, calling_aet="SCANNER1")
        assert allowed.is_established
        allowed.release()


def test_source_address_not_on_the_allow_list_is_rejected(tmp_path):
    with start_node(tmp_path, dicom={"allowed_addresses": ["10.1.2.3"]}) as node:
        refused = associate(node.port)
        assert refused.is_rejected
        assert rejection(refused) == (0x01, 0x01, 0x01)  # permanent, service user, no reason given
    with start_node(tmp_path, dicom={"allowed_addresses": ["127.0.0.1"]}) as node:
        allowed = associate(node.port)
        assert allowed.is_established
        allowed.release()


def test_associations_beyond_the_maximum_are_rejected_transiently(tmp_path):
    with start_node(tmp_path, dicom={"max_associations": 1}) as node:
        first = associate(node.port)
        assert first.is_established
        second = associate(node.port)
        assert rejection(second) == (0x02, 0x03, 0x02)  # transient, presentation, local limit exceeded
        first.release()


def test_both_ends_set_tcp_nodelay(tmp_path):
    with start_node(tmp_path) as node:
        ae = AE(ae_title="SCANNER1")
        ae.add_requested_context(Verification)
        assoc = open_association(ae, "127.0.0.1", node.port, "SLMNODE")
        (served,) = node.server.active_associations
        for end in (assoc, served):
            assert end.dul.socket.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        assoc.release()


# ---- TLS, with the certificates of conftest.py's pki ----------------------------------------------


def test_tls_association_with_client_certificates(tmp_path, pki):
    tls = {
        "enabled": True,
        "certificate": pki["server"][0],
        "private_key": pki["server"][1],
        "ca_certificates": pki["ca"],
        "verify_clients": True,
    }
    paths = write_files([mr_instance("t1_over_tls")], tmp_path / "in")
    with start_node(tmp_path, dicom={"tls": tls}) as node:
        client = client_tls_context(pki["ca"], *pki["client"])
        assert echo("127.0.0.1", node.port, tls=(client, "127.0.0.1"), timeout=TIMEOUT) == 0x0000
        outcomes = send_files("127.0.0.1", node.port, paths, tls=(client, "127.0.0.1"), timeout=TIMEOUT)
        assert statuses(outcomes) == [0x0000]
        assert [row.description for row in stored_instances(node).values()] == ["t1_over_tls"]

        without_certificate = client_tls_context(pki["ca"])
        with pytest.raises(AssociationFailed):
            echo("127.0.0.1", node.port, tls=(without_certificate, "127.0.0.1"), timeout=TIMEOUT)
        with pytest.raises(AssociationFailed):  # plain TCP to a TLS port
            echo("127.0.0.1", node.port, timeout=TIMEOUT)
        untrusted = client_tls_context()  # the system's CAs do not know the test CA
        with pytest.raises(AssociationFailed, match="over TLS .*the TLS handshake failed"):
            echo("127.0.0.1", node.port, tls=(untrusted, "127.0.0.1"), timeout=TIMEOUT)
    assert isinstance(client, ssl.SSLContext)


def test_echo_and_send_commands(tmp_path):
    from click.testing import CliRunner

    from dicom_node.cli.main import cli

    without_uid = mr_instance("t2_no_uid")
    del without_uid.SeriesInstanceUID
    datasets = [mr_instance("t1_cli"), mr_instance("t2_cli"), mr_instance("t1_cut"), without_uid]
    paths = write_files(datasets, tmp_path / "in")
    paths[2].write_bytes(paths[2].read_bytes()[:-10])
    (tmp_path / "in" / "README.txt").write_text("not DICOM")
    runner = CliRunner()
    with start_node(tmp_path, dicom={"allowed_calling_aes": ["SLMSCU"]}) as node:
        port = str(node.port)
        echoed = runner.invoke(cli, ["echo", "127.0.0.1", port])
        sent = runner.invoke(cli, ["send", "127.0.0.1", port, str(tmp_path / "in")])
        refused = runner.invoke(cli, ["send", "--aet", "INTRUDER", "127.0.0.1", port, str(paths[0])])
        stored = stored_instances(node)
    assert (echoed.exit_code, echoed.output) == (0, f"C-ECHO ANY-SCP at 127.0.0.1:{port}: Success\n")
    assert sent.exit_code == 1
    assert f"{paths[2]}: Failure 0xC210 (Cannot Understand)" in sent.output
    # The standard's name for 0xA900, and the node's reason (its Error Comment); every skipped file named.
    assert f"{paths[3]}: Failure 0xA900 (Data Set Does Not Match SOP Class): the dataset has no SeriesInstanceUID\n" \
        in sent.output
    assert f"{tmp_path / 'in' / 'README.txt'}: skipped (not DICOM instances)\n" in sent.output
    assert sent.output.endswith(
        f"5 files to ANY-SCP at 127.0.0.1:{port}: 2 Success, 1 Failure 0xC210 (Cannot Understand), "
        "1 Failure 0xA900 (Data Set Does Not Match SOP Class), 1 skipped (not DICOM instances)\n"
    )
    assert sorted(row.description for row in stored.values()) == ["t1_cli", "t2_cli"]
    assert refused.exit_code == 1 and "Traceback" not in refused.output
    assert f"association with ANY-SCP at 127.0.0.1:{port} rejected: Calling AE title not recognised (permanent)" \
        in refused.output
    nobody = runner.invoke(cli, ["echo", "127.0.0.1", port])  # the node has stopped: nothing listens there
    assert nobody.exit_code == 1 and f"cannot connect to 127.0.0.1:{port} (nothing listening there" in nobody.output
