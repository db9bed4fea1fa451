"""A byte-level BPE tokenizer trained on our own text, for models trained from scratch.

Byte-level BPE (as OPT's GPT-2 tokenizer) never meets an unknown character, so a series
description in any character set still tokenizes. The special tokens follow OPT's layout:
"</s>" opens every prompt and closes every target, "<pad>" pads batches. The JSON glue of the
answers (slm.tasks.glue_pieces) is added whole, one token per piece.
"""

from __future__ import annotations

from typing import Iterable

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from slm.tasks import glue_pieces

SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>"]


def train_tokenizer(texts: Iterable[str], vocab_size: int = 4000, min_frequency: int = 2) -> PreTrainedTokenizerFast:
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(texts, trainer=trainer)
    eos = bpe.token_to_id("</s>")
    bpe.post_processor = processors.TemplateProcessing(single="</s> $A", special_tokens=[("</s>", eos)])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token="</s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
    )
    tokenizer.add_tokens([AddedToken(piece, normalized=False) for piece in glue_pieces()])
    return tokenizer
