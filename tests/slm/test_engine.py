import shutil

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer

from bench.study_decode import study_decode
from slm import engine as engine_module
from slm.engine import (
    BUILD_EMBEDDED, IMPRESSION_SAMPLES, Engine, ModelUnavailable, _Choice, load_engine, repeated_sentence, repeated_words,
)
from slm.tasks import (
    HARMONIZE,
    IMPRESSION,
    IMPRESSION_PREFIX,
    LABEL,
    LABEL_KEYS,
    SERIES_LABELS,
    encode_piece,
    encode_prompt,
    fill,
    harmonize_pieces,
    label_pieces,
    no_finding,
    report_text,
)
from tests.support.tiny_model import DESCRIPTIONS, REPORTS

TEXTS = DESCRIPTIONS + ["  sag T1 +C ", "", "Ｔ２　ＡＸ ÄÖ"]


@pytest.fixture(scope="module")
def folder(tiny_model_folder):
    return tiny_model_folder


@pytest.fixture(scope="module")
def engine(folder):
    return load_engine(str(folder), device="cpu", batch_size=4, impression_max_tokens=24)


def sequence_logprob(model, ids: list[int], start: int) -> float:
    """log p(ids[start:] | ids[:start]) from one forward pass over the whole sequence, no cache."""
    with torch.no_grad():
        logprobs = model(input_ids=torch.tensor([ids])).logits.float().log_softmax(-1)[0]
    return sum(float(logprobs[t - 1, ids[t]]) for t in range(start, len(ids)))


def test_untrained_model_gives_valid_outputs(engine):
    predictions = engine.harmonize(TEXTS)
    assert len(predictions) == len(TEXTS)
    for p in predictions:
        assert p.label in SERIES_LABELS
        assert 1 / 7 <= p.confidence <= 1
        assert p.model_version == engine.version
    for labels in engine.label(REPORTS):
        assert list(labels) == list(LABEL_KEYS)
        assert set(labels.values()) <= {"Yes", "No"}
        assert labels["No Finding"] == no_finding(labels)
    for text in engine.impression(REPORTS):
        assert text and "\n" not in text and not text.startswith(IMPRESSION_PREFIX)


def test_no_inputs_no_outputs(engine):
    assert engine.harmonize([]) == engine.label([]) == engine.impression([]) == []


def test_outputs_are_deterministic(folder, engine):
    again = load_engine(str(folder), device="cpu", batch_size=4, impression_max_tokens=24)
    assert again.version == engine.version
    assert engine.harmonize(TEXTS) == again.harmonize(TEXTS) == engine.harmonize(TEXTS)
    assert engine.label_with_scores(REPORTS) == again.label_with_scores(REPORTS)
    assert engine.impression(REPORTS) == again.impression(REPORTS)


def test_batches_and_single_inputs_agree(folder, engine):
    single = load_engine(str(folder), device="cpu", batch_size=1, impression_max_tokens=24)
    together, alone = engine.harmonize(TEXTS), single.harmonize(TEXTS)
    assert [p.label for p in together] == [p.label for p in alone]
    assert [p.confidence for p in together] == pytest.approx([p.confidence for p in alone], abs=1e-5)
    assert engine.label(REPORTS) == single.label(REPORTS)
    assert engine.impression(REPORTS) == single.impression(REPORTS)


def test_cached_harmonize_scores_equal_full_sequence_scores(engine):
    scores = engine.harmonize_scores(TEXTS)
    for text, row in zip(TEXTS, scores):
        context = encode_prompt(engine.tokenizer, HARMONIZE, text)
        context += encode_piece(engine.tokenizer, harmonize_pieces(text)[0])
        expected = [sequence_logprob(engine.model, context + list(ids), len(context))
                    for ids in engine.harmonize_choice.ids]
        assert row.tolist() == pytest.approx(expected, abs=1e-4)


def test_label_walk_equals_full_sequence_scores(engine):
    for text, (labels, yes) in zip(REPORTS, engine.label_with_scores(REPORTS)):
        answers = [labels[key] for key in LABEL_KEYS]
        pieces = fill(label_pieces(), answers)
        context = encode_prompt(engine.tokenizer, LABEL, text)
        for slot, key in enumerate(LABEL_KEYS):
            context += encode_piece(engine.tokenizer, pieces[2 * slot])
            scores = torch.tensor([sequence_logprob(engine.model, context + list(ids), len(context))
                                   for ids in engine.label_choices[slot].ids])
            assert yes[key] == pytest.approx(float(scores.softmax(-1)[0]), abs=1e-4)
            context += encode_piece(engine.tokenizer, answers[slot])


def test_impression_is_constrained_greedy_decoding(folder):
    engine = load_engine(str(folder), device="cpu", batch_size=4, impression_max_tokens=24, impression_samples=0)
    stops, banned = engine._stop_tokens()
    for text, impression in zip(REPORTS, engine.impression(REPORTS)):
        prompt = encode_prompt(engine.tokenizer, IMPRESSION, text) + engine.impression_prefix
        generated = engine.model.generate(
            input_ids=torch.tensor([prompt]), max_new_tokens=24, do_sample=False, num_beams=1,
            suppress_tokens=banned.tolist(), begin_suppress_tokens=stops.tolist(), eos_token_id=stops.tolist(),
            pad_token_id=engine.pad_id,
        )[0, len(prompt):].tolist()
        if generated[-1] in stops.tolist():
            generated = generated[:-1]
        generated = cut_at_a_repeat(generated, engine._sentence_ends())
        assert impression == " ".join(engine.tokenizer.decode(generated, skip_special_tokens=True).split())


def test_sampled_impressions_can_outvote_the_greedy_one(folder, engine):
    """An untrained model's next-token distribution is flat, so 32 samples rarely agree with its greedy
    impression: the consensus is written, and it differs from the greedy one on some reports."""
    greedy = load_engine(str(folder), device="cpu", batch_size=4, impression_max_tokens=24, impression_samples=0)
    assert engine.impression_samples == IMPRESSION_SAMPLES
    assert engine.impression(REPORTS) != greedy.impression(REPORTS)


def test_impressions_never_hold_a_control_character(engine):
    """Sampling can reach a byte token for NUL, which PostgreSQL refuses to store (the report job failed on
    it): control characters are banned like the JSON of the other tasks; a newline still ends the text."""
    stops, banned = engine._stop_tokens()
    for character in ("\x00", "\x07", "\t"):
        ids = encode_piece(engine.tokenizer, character)
        assert len(ids) == 1 and ids[0] in banned.tolist(), character
    assert encode_piece(engine.tokenizer, "\n")[0] in stops.tolist()
    for text in engine.impression(REPORTS * 3):
        assert text.isprintable(), repr(text)


def cut_at_a_repeat(ids, ends):
    """What the engine keeps of a greedy sequence: up to a repeated sentence or run of tokens."""
    for n in range(1, len(ids) + 1):
        keep = repeated_sentence(ids[:n], ends) if ids[n - 1] in ends else repeated_words(ids[:n])
        if keep is not None:
            return ids[:keep]
    return ids


def test_long_inputs_lose_their_start_and_keep_the_prompt(engine):
    report = "FINDINGS: " + "The lungs are clear. " * 400 + "END OF REPORT"
    rows = engine._impression_rows(report)
    assert len(rows) + engine.impression_max_tokens <= engine.max_positions
    prompt = engine.tokenizer.decode(rows, skip_special_tokens=True)
    assert prompt.startswith("### Instruction:\n" + IMPRESSION.instruction)
    assert prompt.endswith("END OF REPORT\n\n### Response:\n" + IMPRESSION_PREFIX)
    assert "FINDINGS:" not in prompt
    assert engine.harmonize([report])[0].label in SERIES_LABELS
    assert list(engine.label([report])[0]) == list(LABEL_KEYS)
    assert engine.impression([report])[0]


def test_an_answer_that_begins_another_is_scored_with_what_closes_it(engine):
    choice = _Choice.of(engine.tokenizer, ["T", "T1"], '"}')
    close = encode_piece(engine.tokenizer, '"}')[0]
    assert all(ids[-1] == close for ids in choice.ids)
    assert choice.ids[0] == tuple(encode_piece(engine.tokenizer, "T")) + (close,)


def test_answers_that_share_their_first_tokens_share_one_feed(engine):
    choice = engine.harmonize_choice
    t1, t2 = choice.ids[:2]
    assert len(t1) > 1 and t1[:-1] == t2[:-1]  # the tiny tokenizer splits "T1" and "T2" alike
    assert choice.feeds[choice.feed_of(t1)] == choice.feeds[choice.feed_of(t2)]
    assert len(choice.feeds) < sum(len(ids) > 1 for ids in choice.ids)


def test_lora_adapter_is_merged_whether_named_beside_its_base_or_alone(folder, engine, tmp_path):
    base = AutoModelForCausalLM.from_pretrained(str(folder))
    lora = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():
        for name, parameter in lora.named_parameters():
            if "lora_B" in name:
                parameter.normal_(std=0.5)
    lora.save_pretrained(tmp_path / "adapter")
    merged = Engine(lora.merge_and_unload(), AutoTokenizer.from_pretrained(str(folder)), "merged", device="cpu")

    with_base = load_engine(str(folder), adapter=str(tmp_path / "adapter"), device="cpu")
    alone = load_engine(str(tmp_path / "adapter"), device="cpu")
    assert with_base.version == alone.version != engine.version
    assert with_base.version.startswith("model+adapter-")
    assert not any("lora" in name for name, _ in with_base.model.named_modules())
    assert torch.allclose(with_base.harmonize_scores(TEXTS), merged.harmonize_scores(TEXTS), atol=1e-5)
    assert torch.allclose(alone.harmonize_scores(TEXTS), merged.harmonize_scores(TEXTS), atol=1e-5)
    assert not torch.allclose(with_base.harmonize_scores(TEXTS), engine.harmonize_scores(TEXTS), atol=1e-3)


def test_version_follows_the_weights_not_the_folder(folder, engine, tmp_path):
    shutil.copytree(folder, tmp_path / "copy" / "model")
    assert load_engine(str(tmp_path / "copy" / "model"), device="cpu").version == engine.version
    model = AutoModelForCausalLM.from_pretrained(str(folder))
    with torch.no_grad():
        model.lm_head.weight[5, 3] += 1e-3
    model.save_pretrained(tmp_path / "changed" / "model")
    AutoTokenizer.from_pretrained(str(folder)).save_pretrained(tmp_path / "changed" / "model")
    changed = load_engine(str(tmp_path / "changed" / "model"), device="cpu").version
    assert changed != engine.version and changed.startswith("model-")


def test_missing_models_are_reported_clearly(tmp_path, monkeypatch):
    with pytest.raises(ModelUnavailable, match="nope"):
        load_engine(str(tmp_path / "nope"))
    monkeypatch.setattr(engine_module, "EMBEDDED_MODEL", tmp_path / "default_model")
    with pytest.raises(ModelUnavailable, match="embedded model has not been built") as info:
        load_engine("embedded")
    assert BUILD_EMBEDDED in str(info.value)


def test_study_decoding_parses_or_counts_invalid_outputs(engine):
    outputs, tokens = study_decode(engine, "harmonize", DESCRIPTIONS[:3])
    assert len(outputs) == 3 and tokens > 0
    assert all(output is None or output in SERIES_LABELS for output in outputs)


def test_a_repeated_sentence_is_cut_where_it_begins():
    ends = frozenset({1})  # token 1 is a full stop
    assert repeated_sentence([5, 7, 1, 6, 1, 5, 7, 1], ends) == 5  # "5 7." again: keep "5 7. 6."
    assert repeated_sentence([5, 7, 1, 6, 1, 5, 1], ends) is None  # "5." is a new sentence
    assert repeated_sentence([5, 7, 1], ends) is None


def test_a_run_of_four_tokens_written_again_is_cut_where_it_repeats():
    assert repeated_words([1, 2, 3, 4, 9, 1, 2, 3, 4]) == 5  # "1 2 3 4" again: keep "1 2 3 4 9"
    assert repeated_words([1, 2, 3, 4, 1, 2, 3, 5]) is None
    assert repeated_words([1, 1, 1, 1, 1, 1, 1]) is None  # overlapping the end does not count yet
    assert repeated_words([1, 1, 1, 1, 1, 1, 1, 1]) == 4


def test_the_shipped_model_writes_no_json_and_no_loop_on_reports_unlike_its_training():
    """Very short reports are unlike Open-i's: on them the shipped model drifted into a labeling answer's
    JSON keys and looped on "or scarring" until the budget ended."""
    shipped = load_engine("embedded", device="cpu")
    texts = [report_text({"indication": "cough", "findings": findings}, include_impression=False)
             for findings in ("Left basilar opacity.", "Heart size normal. Lungs clear.", "Bibasilar opacities.")]
    for ids, text in zip(shipped.impression_tokens(texts), shipped.impression(texts)):
        assert not any(c in text for c in '"{}'), text
        assert repeated_words(ids) is None and len(ids) < shipped.impression_max_tokens, text
