"""Realistic DICOM instances for tests and the ingest benchmark: MR, CT and SR, as scanners send them.

Each function returns a pydicom Dataset with its file meta, ready for `write_files`. The MR headers carry
what a Siemens/GE/Philips brain protocol puts there (sequence tags, geometry, patient module), so the
node parses what it will parse in a hospital; pixel data is small unless asked otherwise.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
from pydicom import dcmwrite
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence
from pydicom.uid import (
    ComprehensiveSRStorage,
    ComputedRadiographyImageStorage,
    CTImageStorage,
    ExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    MRImageStorage,
    RLELossless,
    generate_uid,
)

# A brain protocol as a Siemens scanner names it: (description, protocol, sequence name).
BRAIN_PROTOCOL = [
    ("t1_mprage_sag_p2_iso", "t1_mprage_sag_p2_iso", "*tfl3d1_16ns"),
    ("t2_tse_tra_512", "t2_tse_tra_512", "*tse2d1_15"),
    ("t2_tirm_tra_dark-fluid", "t2_tirm_tra_dark-fluid", "*tir2d1_13"),
    ("ep2d_diff_3scan_trace_p2", "ep2d_diff_3scan_trace_p2", "*ep_b1000t"),
    ("ep2d_diff_3scan_trace_p2_ADC", "ep2d_diff_3scan_trace_p2", "*ep_b0_1000"),
    ("swi_tra_p2", "swi_tra_p2", "*swi3d1r"),
]


def _file_meta(sop_class: str, sop_instance: str, transfer_syntax: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_instance
    meta.TransferSyntaxUID = transfer_syntax
    return meta


def _patient_and_study(ds: Dataset, study_uid: str, patient: str) -> None:
    ds.PatientName = f"{patient}^Test"
    ds.PatientID = f"PID-{zlib.crc32(patient.encode()):010d}"
    ds.PatientBirthDate = "19640312"
    ds.PatientSex = "F"
    ds.StudyInstanceUID = study_uid
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = "20240611"
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "101502"
    ds.AccessionNumber = "ACC" + study_uid[-8:].replace(".", "")
    ds.StudyID = "1"
    ds.ReferringPhysicianName = "Referrer^Dr"
    ds.InstitutionName = "Test Hospital"


def _image(ds: Dataset, rows: int, pixels: np.ndarray | None = None) -> None:
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = ds.Columns = rows
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelSpacing = [0.9, 0.9]
    ds.ImagePositionPatient = [-120.0, -120.0, 10.0 * int(ds.InstanceNumber)]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    if pixels is None:
        pixels = (np.arange(rows * rows, dtype=np.uint16) % 4096).reshape(rows, rows)
    ds.PixelData = pixels.tobytes()


def mr_instance(
    description: str | None = "t1_mprage_sag_p2_iso",
    *,
    study_uid: str | None = None,
    series_uid: str | None = None,
    series_number: int = 1,
    instance_number: int = 1,
    rows: int = 16,
    protocol: str | None = None,
    sequence_name: str = "*tfl3d1_16ns",
    manufacturer: str = "SIEMENS",
    model: str = "Skyra",
    character_set: str | list[str] | None = None,
    patient: str = "Doe",
) -> Dataset:
    """One MR image. `description=None` leaves (0008,103E) out."""
    ds = Dataset()
    sop_instance = generate_uid()
    ds.file_meta = _file_meta(MRImageStorage, sop_instance, ExplicitVRLittleEndian)
    if character_set:
        ds.SpecificCharacterSet = character_set
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND"]
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = sop_instance
    ds.Modality = "MR"
    ds.Manufacturer = manufacturer
    ds.ManufacturerModelName = model
    ds.StationName = "MRC40123"
    _patient_and_study(ds, study_uid or generate_uid(), patient)
    if description is not None:
        ds.SeriesDescription = description
    ds.ProtocolName = protocol if protocol is not None else (description or "")
    ds.BodyPartExamined = "HEAD"
    ds.ScanningSequence = ["GR", "IR"]
    ds.SequenceVariant = ["SK", "SP", "MP"]
    ds.MRAcquisitionType = "3D"
    ds.SequenceName = sequence_name
    ds.SliceThickness = 1.0
    ds.RepetitionTime = 2300.0
    ds.EchoTime = 2.98
    ds.InversionTime = 900.0
    ds.MagneticFieldStrength = 3.0
    ds.FlipAngle = 9.0
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.SeriesNumber = series_number
    ds.InstanceNumber = instance_number
    ds.FrameOfReferenceUID = generate_uid()
    _image(ds, rows)
    return ds


def ct_instance(*, study_uid: str | None = None, series_uid: str | None = None, rows: int = 16) -> Dataset:
    """One head CT image."""
    ds = Dataset()
    sop_instance = generate_uid()
    ds.file_meta = _file_meta(CTImageStorage, sop_instance, ExplicitVRLittleEndian)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = sop_instance
    ds.Modality = "CT"
    ds.Manufacturer = "GE MEDICAL SYSTEMS"
    ds.ManufacturerModelName = "Revolution CT"
    _patient_and_study(ds, study_uid or generate_uid(), "Doe")
    ds.SeriesDescription = "Head 5.0 Std"
    ds.ProtocolName = "HEAD ROUTINE"
    ds.BodyPartExamined = "HEAD"
    ds.KVP = 120
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.SeriesNumber = 2
    ds.InstanceNumber = 1
    ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
    _image(ds, rows)
    return ds


def cr_instance(*, study_uid: str | None = None, body_part: str = "CHEST", description: str = "CHEST PA") -> Dataset:
    """One computed radiograph, a chest PA by default."""
    ds = Dataset()
    sop_instance = generate_uid()
    ds.file_meta = _file_meta(ComputedRadiographyImageStorage, sop_instance, ExplicitVRLittleEndian)
    ds.SOPClassUID = ComputedRadiographyImageStorage
    ds.SOPInstanceUID = sop_instance
    ds.Modality = "CR"
    ds.Manufacturer = "AGFA"
    _patient_and_study(ds, study_uid or generate_uid(), "Doe")
    ds.SeriesDescription = description
    ds.BodyPartExamined = body_part
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    _image(ds, 16)
    return ds


def sr_instance(*, study_uid: str | None = None) -> Dataset:
    """A radiology report as a Comprehensive SR document: no pixels, a content tree instead."""
    return text_sr([sr_text("No acute intracranial abnormality.", ("121071", "DCM", "Finding"))], study_uid=study_uid)


def text_sr(
    content: list[Dataset],
    *,
    sop_class: str = ComprehensiveSRStorage,
    study_uid: str | None = None,
    patient: str = "Doe",
    title: tuple[str, str, str] = ("18748-4", "LN", "Diagnostic Imaging Report"),
) -> Dataset:
    """A report SR document of `sop_class` (Basic Text, Enhanced or Comprehensive SR) whose root
    CONTAINER holds `content` (see sr_text and sr_container)."""
    ds = sr_container(title, content)
    del ds.RelationshipType  # the root content item is the document itself
    sop_instance = generate_uid()
    ds.file_meta = _file_meta(sop_class, sop_instance, ExplicitVRLittleEndian)
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_instance
    ds.Modality = "SR"
    ds.Manufacturer = "Reporting System"
    _patient_and_study(ds, study_uid or generate_uid(), patient)
    ds.SeriesDescription = "Radiology report"
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber = 900
    ds.InstanceNumber = 1
    ds.CompletionFlag = "COMPLETE"
    ds.VerificationFlag = "UNVERIFIED"
    return ds


def sr_text(text: str, concept: tuple[str, str, str] | None = None, relationship: str = "CONTAINS") -> Dataset:
    """A TEXT content item; `concept` is (code value, scheme, meaning), None for an item without one."""
    item = Dataset()
    item.RelationshipType = relationship
    item.ValueType = "TEXT"
    if concept:
        item.ConceptNameCodeSequence = Sequence([_code(*concept)])
    item.TextValue = text
    return item


def sr_container(concept: tuple[str, str, str], content: list[Dataset]) -> Dataset:
    """A CONTAINER content item, a report section such as ("121070", "DCM", "Findings")."""
    item = Dataset()
    item.RelationshipType = "CONTAINS"
    item.ValueType = "CONTAINER"
    item.ContinuityOfContent = "SEPARATE"
    item.ConceptNameCodeSequence = Sequence([_code(*concept)])
    item.ContentSequence = Sequence(content)
    return item


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = value, scheme, meaning
    return code


def brain_study(images_per_series: int = 2, rows: int = 16, patient: str = "Doe") -> list[Dataset]:
    """A whole brain MR study: one series per entry of BRAIN_PROTOCOL."""
    study_uid = generate_uid()
    instances = []
    for number, (description, protocol, sequence_name) in enumerate(BRAIN_PROTOCOL, start=1):
        series_uid = generate_uid()
        for index in range(1, images_per_series + 1):
            instances.append(
                mr_instance(
                    description,
                    study_uid=study_uid,
                    series_uid=series_uid,
                    series_number=number,
                    instance_number=index,
                    rows=rows,
                    protocol=protocol,
                    sequence_name=sequence_name,
                    patient=patient,
                )
            )
    return instances


def rle_compressed(ds: Dataset) -> Dataset:
    """The same image, RLE Lossless encapsulated (pydicom's own encoder)."""
    ds.compress(RLELossless, encoding_plugin="pydicom")
    return ds


def jpeg_baseline_undecodable(ds: Dataset) -> Dataset:
    """The image relabelled JPEG Baseline with a fragment no decoder accepts: a node that decodes
    pixel data would fail on it, one that reads only the header does not notice."""
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    ds.PixelData = encapsulate([b"\xff\xd8\xff\xe0" + b"\x00" * 64 + b"\xff\xd9"])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    return ds


def write_files(datasets: list[Dataset], folder: Path) -> list[Path]:
    """Each dataset as a DICOM file (preamble, file meta, dataset in its transfer syntax)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for number, ds in enumerate(datasets):
        path = folder / f"{number:06d}.dcm"
        dcmwrite(path, ds, enforce_file_format=True)
        paths.append(path)
    return paths


def deflate_bomb(ds: Dataset, inflated_size: int, path: Path) -> Path:
    """`ds` without its pixels, then an OB element of `inflated_size` zero bytes, as a Deflated Explicit VR
    Little Endian file: a few hundred KB on disk, deflated piece by piece so that no one holds it whole."""
    from io import BytesIO

    from pydicom.filewriter import write_dataset, write_file_meta_info
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    del ds.PixelData
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    header = BytesIO()
    write_dataset(_little_endian_explicit(header), ds)
    deflater = zlib.compressobj(zlib.Z_BEST_COMPRESSION, zlib.DEFLATED, -zlib.MAX_WBITS)
    pixel_element = b"\xe0\x7f\x10\x00OB\x00\x00" + inflated_size.to_bytes(4, "little")
    body = [deflater.compress(header.getvalue() + pixel_element)]
    zeros = bytes(2**20)
    for _ in range(inflated_size // len(zeros)):
        body.append(deflater.compress(zeros))
    body.append(deflater.flush())
    meta = BytesIO()
    write_file_meta_info(_little_endian_explicit(meta), ds.file_meta)
    path.write_bytes(b"\0" * 128 + b"DICM" + meta.getvalue() + b"".join(body))
    return path


def _little_endian_explicit(buffer):
    from pydicom.filebase import DicomFileLike

    out = DicomFileLike(buffer)
    out.is_little_endian, out.is_implicit_VR = True, False
    return out
