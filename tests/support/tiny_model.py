"""A tiny, untrained OPT model and its tokenizer saved as a model folder, for engine and CLI tests."""

from __future__ import annotations

from pathlib import Path

import torch

from slm.tasks import LABEL_KEYS, SERIES_LABELS, TASKS, report_text
from training.scratch import new_opt_model
from training.tokenizer import train_tokenizer

DESCRIPTIONS = ["t1_mprage_sag", "AX T2 FSE", "Ax FLAIR", "ep2d_diff_b1000 TRACEW", "dADC", "SWI_mIP", "Localizer"]
REPORTS = [
    report_text({"indication": "Chest pain", "findings": "The heart is normal in size. The lungs are clear."}),
    report_text({"indication": "Cough", "comparison": "None", "findings": "Small left pleural effusion."}),
    report_text({"findings": "Right lower lobe opacity. Sternotomy wires."}),
]


def use_one_thread() -> None:
    """Tiny models run faster on one thread than on two that other processes contend for."""
    torch.set_num_threads(1)


def save_tiny_model(folder: Path, vocab_size: int = 400, seed: int = 0) -> Path:
    """Save a random tiny model; the small vocabulary splits most labels into several tokens."""
    use_one_thread()
    corpus = [task.prompt(text) for task in TASKS.values() for text in DESCRIPTIONS + REPORTS]
    corpus += list(SERIES_LABELS) + list(LABEL_KEYS) + ["Yes", "No", "IMPRESSION: No acute disease."]
    tokenizer = train_tokenizer(corpus * 3, vocab_size=vocab_size)
    model = new_opt_model(tokenizer, size="tiny", seed=seed)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
