"""People's corrections, the corrections table's owner: a person's label for a description, which wins
over the model's from then on (queries in mappings.py derive the effective label)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import insert, select

from dicom_node.store.database import Store, StoreError
from dicom_node.store.mappings import effective_label, requeue_similar
from dicom_node.store.tables import Correction, Description, description_hash, spelling_hash, utcnow
from slm.tasks import SERIES_LABELS


class UnknownDescription(StoreError):
    """No stored description matches what a person typed."""


class NotMappedYet(StoreError):
    """A description still queued for the harmonizer: it has no label to confirm."""


def find_description(store: Store, text: str) -> str:
    """The stored text a person meant: exact, else the first stored spelling of it (case, blanks and
    underscores aside: slm.harmonizer.description_key), since a correction covers every spelling anyway."""
    with store.engine.connect() as conn:
        if conn.scalar(select(Description.id).where(Description.text_hash == description_hash(text))):
            return text
        spelling = select(Description.text).where(Description.spelling_hash == spelling_hash(text))
        found = conn.scalar(spelling.order_by(Description.id).limit(1))
    if found is not None:
        return found
    raise UnknownDescription(f"no series description {text!r} in the store; see `slmnode mappings --search`")


def correct(store: Store, description: str, label: str, who: str, note: str | None = None) -> int:
    """A person's label for a description; from now on it wins over the model's. Similar stored
    descriptions are queued to be mapped again with it (mappings.requeue_similar); how many."""
    text = find_description(store, description)
    add_correction(store, text, label, who, note, utcnow())
    return requeue_similar(store, text)


def add_correction(store: Store, text: str, label: str, who: str, note: str | None, created_at: datetime) -> bool:
    """Record a correction unless the same one (text, label, who, time) is already there."""
    if label not in SERIES_LABELS:
        raise ValueError(f"label {label!r} is not one of {', '.join(SERIES_LABELS)}")
    with store.transaction() as conn:
        description_id = store.description_id(conn, text)
        same = select(Correction.id).where(
            Correction.description_id == description_id,
            Correction.label == label,
            Correction.who == who,
            Correction.created_at == created_at,
        )
        if conn.scalar(same) is not None:
            return False
        conn.execute(
            insert(Correction).values(
                description_id=description_id, label=label, who=who, note=note, created_at=created_at
            )
        )
        return True


def confirm(store: Store, description: str, who: str, note: str | None = None) -> str:
    """A person agrees with the label shown (the latest correction's, else the model's): a correction with
    that label, which marks the mapping reviewed. The label confirmed; a description still queued has none."""
    text = find_description(store, description)
    label = effective_label(store.engine, text)
    if label is None:
        raise NotMappedYet(f"{text!r} is not harmonized yet: there is no label to confirm")
    add_correction(store, text, label, who, note, utcnow())
    return label
