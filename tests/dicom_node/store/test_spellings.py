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
