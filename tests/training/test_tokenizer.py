"""The scratch BPE tokenizer: lossless on any text, OPT's special-token layout, same ids after save and load."""

import pytest
from transformers import AutoTokenizer

from slm.tasks import HARMONIZE, encode_prompt, encode_target, harmonize_pieces, fill
from training.tokenizer import SPECIAL_TOKENS, train_tokenizer

CORPUS = [
    "INDICATION: Chest pain\nFINDINGS: The heart is normal in size. The lungs are clear.",
    "IMPRESSION: No acute cardiopulmonary abnormality.",
    "t1_mprage_sag AX T2 FSE Ax FLAIR ep2d_diff_b1000 TRACEW dADC SWI_mIP Localizer",
] * 20


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(CORPUS, vocab_size=500)


@pytest.mark.parametrize(
    "text",
    [
        "FINDINGS: The heart is normal in size.",
        "頭部 T1強調 軸位 造影後",  # Japanese, never seen in training
        "  leading and trailing blanks  ",
        "Ångström ß ü T2* ½ 🙂",
        "tab\there\nnewline",
    ],
)
def test_round_trip_is_lossless(tokenizer, text):
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.unk_token_id not in ids
    assert tokenizer.decode(ids) == text


def test_learns_merges_from_the_corpus(tokenizer):
    # Frequent words become single tokens; an unseen word needs several.
    assert len(tokenizer("FINDINGS", add_special_tokens=False)["input_ids"]) == 1
    assert len(tokenizer("Zygomatic", add_special_tokens=False)["input_ids"]) > 1
    assert len(tokenizer) <= 500


def test_special_tokens_follow_opt(tokenizer):
    assert tokenizer.convert_ids_to_tokens(list(range(4))) == SPECIAL_TOKENS
    assert tokenizer.bos_token == tokenizer.eos_token == "</s>"
    assert tokenizer.pad_token == "<pad>" and tokenizer.pad_token_id != tokenizer.eos_token_id
    prompt = encode_prompt(tokenizer, HARMONIZE, "AX T2")
    assert prompt[0] == tokenizer.eos_token_id and prompt.count(tokenizer.eos_token_id) == 1
    target = encode_target(tokenizer, fill(harmonize_pieces("AX T2"), ["T2"]))
    assert target[-1] == tokenizer.eos_token_id and tokenizer.eos_token_id not in target[:-1]


def test_same_ids_after_save_and_load(tokenizer, tmp_path):
    tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    for text in CORPUS[:3] + ["頭部 T1強調"]:
        assert encode_prompt(loaded, HARMONIZE, text) == encode_prompt(tokenizer, HARMONIZE, text)
    assert (loaded.pad_token_id, loaded.eos_token_id) == (tokenizer.pad_token_id, tokenizer.eos_token_id)


def test_answer_glue_is_one_token_per_piece(tokenizer):
    """The token before each label answer names the finding asked (see slm.tasks.glue_pieces)."""
    from slm.tasks import LABEL, FINDINGS, target_pieces

    pieces = target_pieces(LABEL, "report", {finding: "No" for finding in FINDINGS})
    for piece in pieces[0::2]:  # the fixed pieces; answers sit between them
        assert len(tokenizer(piece, add_special_tokens=False)["input_ids"]) == 1, piece
    ids = [tokenizer(piece, add_special_tokens=False)["input_ids"][0] for piece in pieces[0::2]]
    assert len(set(ids)) == len(ids)
    harmonize = tokenizer(harmonize_pieces("AX T1")[0], add_special_tokens=False)["input_ids"]
    assert tokenizer.convert_ids_to_tokens(harmonize[-1]) == '": "'
