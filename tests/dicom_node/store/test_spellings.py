"""A correction covers every spelling of its description: case, blanks and underscores aside."""

from dicom_node.store import corrections, mappings
from tests.support.helpers_dicom import record


def labels(store) -> dict[str, tuple[str | None, bool]]:
    return {m.description: (m.label, m.corrected) for m in mappings.mappings(store.engine)}


def test_a_correction_labels_every_spelling_seen_before_and_after(store):
    for n, text in enumerate(["AX_T2_FLAIR", "ax t2 flair ", "AX T2"]):
        assert store.record_instance(record(f"1.{n}", series=f"2.{n}", study="3", description=text))
    corrections.correct(store, "Ax T2  Flair", "FLAIR", who="dr. a")  # typed as neither stored spelling
    assert labels(store) == {"AX_T2_FLAIR": ("FLAIR", True), "ax t2 flair ": ("FLAIR", True), "AX T2": (None, False)}
    assert store.record_instance(record("1.9", series="2.9", study="3", description=" Ax_T2 FLAIR"))
    assert labels(store)[" Ax_T2 FLAIR"] == ("FLAIR", True)
    assert [m.series_count for m in mappings.mappings(store.engine, label="FLAIR")] == [1, 1, 1]
    shown = {s.description: (s.label, s.source) for s in mappings.series_mappings(store.engine, study_uid="3")}
    assert shown[" Ax_T2 FLAIR"] == ("FLAIR", "corrected") and shown["AX T2"] == (None, "queued")


def test_the_latest_correction_of_any_spelling_wins(store):
    for n, text in enumerate(["t2_tse_tra", "T2 TSE TRA"]):
        store.record_instance(record(f"1.{n}", series=f"2.{n}", study="3", description=text))
    corrections.correct(store, "t2_tse_tra", "FLAIR", who="dr. a")
    corrections.correct(store, "T2 TSE TRA", "T2", who="dr. b")  # later, on the other spelling
    assert labels(store) == {"t2_tse_tra": ("T2", True), "T2 TSE TRA": ("T2", True)}
    assert [(c.description, c.label) for c in mappings.corrections(store.engine)] == [
        ("t2_tse_tra", "FLAIR"), ("T2 TSE TRA", "T2")]  # each correction is kept as it was made


def test_a_correction_queues_similar_stored_descriptions_the_rules_cannot_read(store):
    """A correction reaches the stored spellings a model with neighbours reads it for, not only new ones."""
    from datetime import datetime, timezone

    from slm.harmonizer import Prediction

    texts = ["SAG ZORBEX", "tra_zorbex_2", "AX T2 FLAIR", "AX T2 ZORBEX", "localizer"]
    for n, text in enumerate(texts):
        store.record_instance(record(f"1.{n}", series=f"2.{n}", study="3", description=text))
    mapped = datetime(2026, 1, 1, tzinfo=timezone.utc)
    for text in texts:
        mappings.add_mapping(store, text, Prediction("Other", 0.5, "model-1"), mapped)
    assert corrections.correct(store, "SAG ZORBEX", "SWI", who="dr. a") == 1
    status = {m.description: m.status for m in mappings.mappings(store.engine)}
    # tra_zorbex_2 is similar and unread by the rules; AX T2 ZORBEX is similar but the rules read T2;
    # the others are not similar; the corrected one shows its correction anyway.
    assert status == {"SAG ZORBEX": "mapped", "tra_zorbex_2": "queued", "AX T2 FLAIR": "mapped",
                      "AX T2 ZORBEX": "mapped", "localizer": "mapped"}
    assert labels(store)["tra_zorbex_2"] == ("Other", False)  # its label stays until the worker maps it
