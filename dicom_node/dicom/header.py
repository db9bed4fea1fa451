"""What the node reads of a received dataset: its raw elements, then the few header tags the store keeps.

Like pynetdicom's storescp, the C-STORE path never decodes what it does not need: the dataset is read
as raw elements (inflated first when the transfer syntax deflates it), and only the tags of an
InstanceRecord are converted from their bytes. Pixel data, compressed or not, is never touched.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from io import BytesIO
from typing import Any

from pydicom.charset import convert_encodings
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.filereader import read_dataset
from pydicom.multival import MultiValue
from pydicom.uid import UID
from pydicom.values import convert_value

UNDEFINED_LENGTH = 0xFFFFFFFF
# Transfer syntaxes whose whole dataset is deflated (PS3.5 A.5, A.7): Deflated Explicit VR Little
# Endian, JPIP Referenced Deflate, JPIP HTJ2K Referenced Deflate. pydicom knows only the first.
DEFLATED_DATASET = {"1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.4.95", "1.2.840.10008.1.2.4.205"}


class Unreadable(ValueError):
    """The encoded dataset is not a whole DICOM dataset."""


def read_header(encoded: BytesIO, transfer_syntax: str, max_inflated: int) -> Dataset:
    """The dataset as raw, still undecoded elements; raises Unreadable if it is truncated, or if it is
    deflated and inflates to more than `max_inflated` bytes (a few KB can inflate to gigabytes).

    pydicom reads a short last element without complaint, so its length is checked against what
    arrived. Values are decoded lazily, only when the store reads a tag.
    """
    syntax = UID(transfer_syntax)
    data = encoded.getvalue()
    if syntax in DEFLATED_DATASET:
        data = _inflated(data, max_inflated)
    header = read_dataset(BytesIO(data), syntax.is_implicit_VR, syntax.is_little_endian)
    if data and not len(header):
        raise Unreadable("no element could be read")
    if len(header):
        # Only the last element can be short: reading stops where the data ends.
        last = header.get_item(next(reversed(header.keys())))
        length = getattr(last, "length", UNDEFINED_LENGTH)
        if length != UNDEFINED_LENGTH and len(last.value or b"") < length:
            raise Unreadable(f"truncated in element {last.tag}")
    return header


def _inflated(data: bytes, limit: int) -> bytes:
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        inflated = inflater.decompress(data, limit)
    except zlib.error:
        raise Unreadable("the deflated dataset does not inflate") from None
    if inflater.unconsumed_tail:
        megabytes = limit // 2**20
        raise Unreadable(f"the deflated dataset inflates to more than {megabytes} MB (dicom.max_inflated_megabytes)")
    return inflated


class MissingTag(ValueError):
    """A dataset lacks a UID the store cannot do without."""


class InvalidUID(MissingTag):
    """A UID longer than DICOM allows: however often the sender retries, it cannot be stored."""


MAX_UID_LENGTH = 64  # PS3.5 9.1


@dataclass(frozen=True)
class InstanceRecord:
    """One received instance as the store keeps it: its UIDs and the header tags people and the model use."""

    sop_instance_uid: str
    sop_class_uid: str | None
    study_uid: str
    series_uid: str
    modality: str | None
    series_description: str | None
    protocol_name: str | None
    manufacturer: str | None
    model_name: str | None
    body_part: str | None
    series_number: int | None
    accession_number: str | None
    study_date: str | None
    series_date: str | None
    transfer_syntax: str | None
    patient_id: str | None = None
    patient_name: str | None = None
    file_path: str | None = None
    calling_ae: str | None = None  # the sender's AE title, set by the SCP

    @classmethod
    def from_dataset(
        cls, ds, transfer_syntax: str, keep_patient_identifiers: bool = False, file_path: str | None = None
    ) -> "InstanceRecord":
        """The tags of one received dataset; odd, empty or undecodable values become None."""
        header = _Header(ds)
        uids = {}
        for field, keyword in (
            ("sop_instance_uid", "SOPInstanceUID"),
            ("study_uid", "StudyInstanceUID"),
            ("series_uid", "SeriesInstanceUID"),
        ):
            uids[field] = header.text(keyword)
            if uids[field] is None:
                raise MissingTag(f"the dataset has no {keyword}")
            if len(uids[field]) > MAX_UID_LENGTH:
                raise InvalidUID(f"its {keyword} has {len(uids[field])} characters, more than a UID's {MAX_UID_LENGTH}")
        return cls(
            **uids,
            sop_class_uid=header.text("SOPClassUID"),
            modality=header.text("Modality"),
            series_description=header.text("SeriesDescription"),
            protocol_name=header.text("ProtocolName"),
            manufacturer=header.text("Manufacturer"),
            model_name=header.text("ManufacturerModelName"),
            body_part=header.text("BodyPartExamined"),
            series_number=header.integer("SeriesNumber"),
            accession_number=header.text("AccessionNumber"),
            study_date=header.text("StudyDate"),
            series_date=header.text("SeriesDate"),
            transfer_syntax=transfer_syntax or None,
            patient_id=header.text("PatientID") if keep_patient_identifiers else None,
            patient_name=header.text("PatientName") if keep_patient_identifiers else None,
            file_path=file_path,
        )


# The header elements the store reads: tag and dictionary VR, looked up once.
_ELEMENTS = {
    keyword: (tag_for_keyword(keyword), dictionary_VR(tag_for_keyword(keyword)))
    for keyword in (
        "SpecificCharacterSet", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "SOPClassUID",
        "Modality", "SeriesDescription", "ProtocolName", "Manufacturer", "ManufacturerModelName",
        "BodyPartExamined", "SeriesNumber", "AccessionNumber", "StudyDate", "SeriesDate", "PatientID", "PatientName",
    )
}


class _Header:
    """Values of a dataset's header, each converted from its raw bytes by pydicom's own converter.

    Going through Dataset.get instead (keyword lookup, hooks, a new DataElement per access) was about
    half of the C-STORE handler's CPU time. A value that cannot be decoded (bad character set, wrong
    VR, truncated) counts as absent.
    """

    def __init__(self, ds):
        self.ds = ds
        self.encodings = None  # SpecificCharacterSet itself is in the default repertoire
        try:
            self.encodings = convert_encodings(self._value("SpecificCharacterSet"))
        except Exception:  # an unknown character set: read what the default repertoire can
            pass

    def _value(self, keyword: str) -> Any:
        tag, vr = _ELEMENTS[keyword]
        try:
            element = self.ds.get_item(tag)
            if element is None:
                return None
            if isinstance(element, RawDataElement):
                return convert_value(vr, element, self.encodings)
            return element.value
        except Exception:
            return None

    def text(self, keyword: str) -> str | None:
        value = self._value(keyword)
        if value is None:
            return None
        if isinstance(value, (list, tuple, MultiValue)):
            value = "\\".join(str(part) for part in value)
        text = str(value).replace("\0", "")  # NUL pads a UID's end; inside a text value no database keeps it
        return text if text.strip() else None

    def integer(self, keyword: str) -> int | None:
        try:
            return int(str(self._value(keyword)).strip())
        except (TypeError, ValueError):
            return None
