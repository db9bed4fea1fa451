"""Labeled neighbours: the nearest known description, read by a model trained with it (slm/neighbours.py)."""

import shutil

import pytest

from slm.engine import load_engine
from slm.hints import hints_for, reads_hints, rule_hint, write_prompt_file
from slm.neighbours import MIN_SIMILARITY, Neighbours, grams, neighbour_hint
from slm.tasks import HARMONIZE


def test_similarity_is_the_jaccard_index_of_trigrams_computed_by_hand():
    assert grams("abcd") == {" ab", "abc", "bcd", "cd "}
    # "abcd" and "abce" share " ab" and "abc" of the 6 trigrams in either: 2/6.
    assert Neighbours([("abce", "T1")]).nearest(["abcd"]) == [("T1", pytest.approx(2 / 6))]
    # "abc" and "abd" share only " ab" of 5: below MIN_SIMILARITY, so no neighbour.
    assert 1 / 5 < MIN_SIMILARITY and Neighbours([("abd", "T1")]).nearest(["abc"]) == [None]


def test_the_nearest_sees_through_case_separators_glued_words_planes_and_numbers():
    known = Neighbours([("DarkFluid T2 COR", "FLAIR"), ("AX T1 SE", "T1"), ("vorex_sag", "SWI")])
    found = known.nearest(["DARK_FLUID_T2_SAG", "Vorex AX 2", "sag t1 se fs", "zzzz"])
    assert [f[0] if f else None for f in found] == ["FLAIR", "SWI", "T1", None]
    assert found[0][1] == found[1][1] == 1.0 and found[2][1] >= MIN_SIMILARITY


def test_a_description_is_not_its_own_neighbour():
    # A correction of any spelling already wins in the store; the neighbour is for other descriptions.
    known = Neighbours([("AX_T2_FLAIR", "FLAIR"), ("sag t2 flair", "T2")])
    assert known.nearest(["ax t2 flair"]) == [("T2", 1.0)]
    assert Neighbours([]).nearest(["AX T2"]) == [None]


def test_the_hint_is_the_label_and_the_similarity_in_tenths():
    assert neighbour_hint("FLAIR", 0.86) == "FLAIR 0.8" and neighbour_hint("T1", 1.0) == "T1 1.0"
    assert neighbour_hint("SWI", 0.3) == "SWI 0.3"  # 0.3 in floating point is 0.2999...: still 0.3
    assert hints_for(HARMONIZE, "vorex ax", True, "FLAIR 0.4") == ("none | known: FLAIR 0.4", None)
    assert hints_for(HARMONIZE, "vorex ax", False, "FLAIR 0.4") == ("known: FLAIR 0.4", None)
    assert hints_for(HARMONIZE, "vorex ax", True) == ("none", None)  # nothing known: the prompt of a model without
    # Where the rules are sure, the neighbour is not shown; where they are unsure, it is.
    assert rule_hint(HARMONIZE, "AX T2") == "T2" and hints_for(HARMONIZE, "AX T2", True, "FLAIR 0.4") == ("T2", None)
    unsure = rule_hint(HARMONIZE, "Et1seGAD")
    assert unsure.endswith("?") and hints_for(HARMONIZE, "Et1seGAD", True, "T1 0.5")[0] == f"{unsure} | known: T1 0.5"


def test_an_engine_shows_neighbours_only_to_a_model_trained_with_them(tiny_model_folder, tmp_path):
    known = Neighbours([("vorex sag", "FLAIR")])
    plain = load_engine(str(tiny_model_folder), device="cpu")
    folder = shutil.copytree(tiny_model_folder, tmp_path / "with-neighbours")
    write_prompt_file(folder, rule_hints=True, neighbours=True)
    reading = load_engine(str(folder), device="cpu")
    assert reading.neighbours and reads_hints(folder, "neighbours") and not plain.neighbours
    decode = reading.tokenizer.decode
    assert "### Rules:\nnone | known: FLAIR 0.4\n" in decode(reading._harmonize_rows(("vorex ax", "FLAIR 0.4")))
    # The engine finds the neighbour itself; a model without neighbours answers as if none were known.
    assert not reading.harmonize_scores(["vorex ax"], known).equal(reading.harmonize_scores(["vorex ax"]))
    assert plain.harmonize_scores(["vorex ax"], known).equal(plain.harmonize_scores(["vorex ax"]))


def test_training_shows_a_share_of_descriptions_their_neighbour_and_every_dialect_one():
    from training.data import Example, dialect_examples, with_neighbours

    plain = [Example("harmonize", f"AX T{i % 2 + 1} SE {i}", f"T{i % 2 + 1}") for i in range(200)]
    dialect = dialect_examples(40, seed=3)
    report = Example("impression", "FINDINGS: clear", "No acute disease.")
    shown = with_neighbours(plain + dialect + [report], share=0.5, seed=0)
    kept = [e for e in shown if (e.uid or "").startswith("dialect:")]
    assert all(e.known for e in kept) and 30 <= len(kept) <= 40  # one with no neighbour near enough is left out
    assert 60 < sum(e.known is not None for e in shown[:200]) < 140
    assert shown[-1].known is None  # reports have no neighbours
    assert with_neighbours(plain, share=0.0)[0].known is None
    # A site's word is explained by another description of the same site, under the same label.
    right = [e.known.split()[0] == e.answer for e in kept]
    assert sum(right) / len(right) > 0.9


def test_training_draws_neighbours_from_a_sparse_pool_that_always_holds_the_corrections():
    from training.data import CORRECTION, NEIGHBOUR_POOL, Example, with_neighbours

    plain = [Example("harmonize", f"AX T2 SE {i}", "T2") for i in range(300)]
    corrected = Example("harmonize", "SAG VOREX", "SWI", CORRECTION)
    shown = with_neighbours(plain + [Example("harmonize", "vorex ax", "SWI"), corrected], share=1.0, seed=0)
    assert shown[300].known.startswith("SWI ")  # the site's correction is always a candidate
    # The others find each other through the sparse pool only (a description is never its own neighbour).
    assert NEIGHBOUR_POOL < 1 and all(e.known and e.known.startswith("T2 ") for e in shown[:300])


def test_the_shipped_model_follows_a_corrected_site_word_to_its_other_spellings():
    """The retrieval path end to end on the embedded model: one correction, other spellings follow at once."""
    engine = load_engine("embedded", device="cpu")
    if not engine.neighbours:
        pytest.skip("the embedded model was not trained with neighbours")
    texts = ["SAG ZORBEX", "zorbex_cor_2", "TRA_ZORBEX"]
    before = [p.label for p in engine.harmonize(texts)]
    for label in ("SWI", "DWI"):
        after = [p.label for p in engine.harmonize(texts, Neighbours([("AX ZORBEX", label)]))]
        assert after == [label] * 3, (before, label, after)
    # A description the rules are sure of keeps its reading, whatever is corrected near it.
    assert engine.harmonize(["AX T2 FLAIR"], Neighbours([("AX T2 FLAIR FS", "T2")]))[0].label == "FLAIR"
