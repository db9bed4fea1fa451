"""The study's decoding, the baseline the inference benchmark times the engine against.

HF `generate` with beam search and sampling, then the parsers of slm/tasks.py. Its outputs can be
invalid, and it says so with None; the engine's never are. It runs on the engine's own model,
tokenizer, prompts and batch size, so the two differ only in how they decode.
"""

from __future__ import annotations

from typing import Sequence

import torch

from slm.engine import Engine
from slm.tasks import (
    HARMONIZE,
    IMPRESSION,
    TASKS,
    Task,
    encode_piece,
    encode_prompt,
    harmonize_pieces,
    label_pieces,
    parse_harmonize,
    parse_impression,
    parse_labels,
)

PARSERS = {"harmonize": parse_harmonize, "label": parse_labels, "impression": parse_impression}


@torch.inference_mode()
def study_decode(engine: Engine, task_name: str, texts: Sequence[str], num_beams: int = 5) -> tuple[list, int]:
    """(outputs, tokens generated); an output the parser cannot read is None.

    Generation stops at end of sequence or after as many tokens as the longest valid answer has
    (the impression budget for impressions).
    """
    task = TASKS[task_name]
    tokenizer = engine.tokenizer
    if task is IMPRESSION:
        rows = [engine._impression_rows(text)[: -len(engine.impression_prefix)] for text in texts]
        limit = len(engine.impression_prefix) + engine.impression_max_tokens
    else:
        limit = max(longest_answer(engine, task, text) for text in texts)
        rows = [engine._fit(text, lambda t: encode_prompt(tokenizer, task, t), limit) for text in texts]
    outputs, tokens = [], 0
    for start in range(0, len(rows), engine.batch_size):
        chunk = rows[start : start + engine.batch_size]
        width = max(map(len, chunk))
        ids = torch.tensor([[engine.pad_id] * (width - len(r)) + r for r in chunk], device=engine.device)
        mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in chunk], device=engine.device)
        generated = engine.model.generate(
            input_ids=ids, attention_mask=mask, num_beams=num_beams, do_sample=True, max_new_tokens=limit,
            pad_token_id=engine.pad_id, eos_token_id=tokenizer.eos_token_id,
        )[:, width:]
        tokens += int(((generated != engine.pad_id) & (generated != tokenizer.eos_token_id)).sum())
        outputs += [PARSERS[task.name](text) for text in tokenizer.batch_decode(generated, skip_special_tokens=True)]
    return outputs, tokens


def longest_answer(engine: Engine, task: Task, text: str) -> int:
    """Tokens in the longest valid answer of a choice task, end of sequence included."""
    if task is HARMONIZE:
        pieces, choices = harmonize_pieces(text)[0::2], [engine.harmonize_choice]
    else:
        pieces, choices = label_pieces()[0::2], engine.label_choices
    fixed = sum(len(encode_piece(engine.tokenizer, piece)) for piece in pieces)
    return fixed + sum(max(map(len, choice.ids)) for choice in choices) + 1
