"""The three tasks as data: instruction, prompt layout, target format and parser.

One causal model does all three, told apart only by the instruction (as in the study). The trainer
and the inference engine both tokenize through `encode_prompt` and `encode_target`, piece by piece,
so that the token boundaries the model was trained on are the ones it is asked to continue.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Mapping, Sequence

SERIES_LABELS = ("T1", "T2", "FLAIR", "DWI", "ADC", "SWI", "Other")
FINDINGS = (
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Lesion",
    "Lung Opacity",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
)
NO_FINDING = "No Finding"
LABEL_KEYS = FINDINGS + (NO_FINDING,)
YES_NO = ("Yes", "No")
REPORT_SECTIONS = ("indication", "comparison", "findings", "impression")
IMPRESSION_PREFIX = "IMPRESSION:"
IMPRESSION_MAX_TOKENS = 128  # the default bound on a written impression: 3 of 2,674 Open-i train impressions are longer

PROMPT = "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n{hint}### Response:\n"
HINT = "### Rules:\n{hint}\n\n"  # the rules' reading, for models trained with it (slm/hints.py)


@dataclass(frozen=True)
class Task:
    name: str
    instruction: str

    def prompt(self, text: str, hint: str | None = None) -> str:
        return PROMPT.format(instruction=self.instruction, input=text, hint=HINT.format(hint=hint) if hint else "")


HARMONIZE = Task(
    "harmonize",
    "Map this MRI series description to one of T1, T2, FLAIR, DWI, ADC, SWI, Other. Answer as JSON.",
)
LABEL = Task(
    "label",
    "Label this chest X-ray report with the 13 CheXpert findings and No Finding. Answer Yes or No for each as JSON.",
)
IMPRESSION = Task(
    "impression",
    "Write the IMPRESSION section of this chest X-ray report from the other sections.",
)
TASKS = {task.name: task for task in (HARMONIZE, LABEL, IMPRESSION)}


def report_text(sections: Mapping[str, str | None], include_impression: bool = True) -> str:
    """A report as the model reads it: one "SECTION: text" line per non-empty section.

    The node, the companion job and the data builders all build report text here.
    """
    names = REPORT_SECTIONS if include_impression else REPORT_SECTIONS[:-1]
    lines = []
    for name in names:
        value = " ".join((sections.get(name) or "").split())
        if value:
            lines.append(f"{name.upper()}: {value}")
    return "\n".join(lines)


def no_finding(labels: Mapping[str, str]) -> str:
    """No Finding is Yes exactly when all 13 findings are No."""
    return "No" if any(labels[f] == "Yes" for f in FINDINGS) else "Yes"


# Targets are lists of pieces; choice tasks alternate fixed text and an answer from a closed set.


def harmonize_pieces(description: str) -> list[str | tuple[str, ...]]:
    key = json.dumps(description, ensure_ascii=False)
    return ["{" + key + ': "', SERIES_LABELS, '"}']


def label_pieces(rule_answers: Sequence[str] | None = None) -> list[str | tuple[str, ...]]:
    """The labeling answer's pieces. With the rule labeler's 14 answers (a model trained with rule
    hints, slm/hints.py), each key carries the rules' answer for it: '"Cardiomegaly" (rules: Yes): "'.
    The answer then follows the rules' word for the very same finding, so a small model copies it where
    the rules hold and learns from the report where they do not."""
    pieces: list[str | tuple[str, ...]] = []
    for i, key in enumerate(LABEL_KEYS):
        ruled = f" (rules: {rule_answers[i]})" if rule_answers is not None else ""
        pieces.append(("{" if i == 0 else '", ') + json.dumps(key) + ruled + ': "')
        pieces.append(YES_NO)
    pieces.append('"}')
    return pieces


def glue_pieces() -> list[str]:
    """The fixed JSON text around answers. Our own tokenizers keep each as one token, so the token
    before an answer says which answer is asked: a small model trained from scratch learns that from
    content at once, while reading it off positions takes it many epochs. The rule-hinted variants of
    the labeling keys are single tokens too."""
    keys = [piece for piece in label_pieces() if isinstance(piece, str)]
    ruled = {piece for answer in YES_NO for piece in label_pieces([answer] * len(LABEL_KEYS)) if isinstance(piece, str)}
    return keys + sorted(ruled - set(keys)) + ['{"', '": "', '"}']


def fill(pieces: Sequence[str | tuple[str, ...]], answers: Sequence[str]) -> list[str]:
    """The target pieces with each choice slot replaced by its answer, in order."""
    answers = iter(answers)
    return [piece if isinstance(piece, str) else next(answers) for piece in pieces]


def target_pieces(task: Task, text: str, answer, rule_answers: Sequence[str] | None = None) -> list[str]:
    """Training target for one example: a label (harmonize), a dict of 14 Yes/No (label; with the rules'
    answers in its keys for a rule-hinted model), a string (impression)."""
    if task is HARMONIZE:
        return fill(harmonize_pieces(text), [answer])
    if task is LABEL:
        labels = dict(answer)
        labels[NO_FINDING] = no_finding(labels)
        return fill(label_pieces(rule_answers), [labels[key] for key in LABEL_KEYS])
    if task is IMPRESSION:
        return [IMPRESSION_PREFIX, " " + " ".join(answer.split())]
    raise ValueError(f"unknown task {task!r}")


def encode_prompt(tokenizer, task: Task, text: str, hint: str | None = None) -> list[int]:
    """Prompt token ids, beginning-of-sequence included when the tokenizer uses one."""
    return tokenizer(task.prompt(text, hint), add_special_tokens=True)["input_ids"]


def encode_piece(tokenizer, piece: str) -> list[int]:
    return tokenizer(piece, add_special_tokens=False)["input_ids"]


def encode_target(tokenizer, pieces: Sequence[str]) -> list[int]:
    """Target token ids, piece by piece, closed by end-of-sequence."""
    ids = [i for piece in pieces for i in encode_piece(tokenizer, piece)]
    return ids + [tokenizer.eos_token_id]


def fit_text(tokenizer, text: str, encode, budget: int) -> list[int] | None:
    """encode(text) within `budget` tokens, dropping the fewest tokens from the START of the text.

    The impression, at the end of a report, says the most, so the start goes first; the trainer and
    the engine both cut here, so a model is trained on inputs cut the way it will be asked. None when
    even an empty text does not fit.
    """
    ids = encode(text)
    if len(ids) <= budget:
        return ids
    if len(encode("")) > budget:
        return None
    offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    starts = [start for start, _ in offsets] + [len(text)]
    low, high = 1, len(starts) - 1  # how many of the text's tokens to drop: the fewest that fit
    while low < high:
        middle = (low + high) // 2
        if len(encode(text[starts[middle]:])) <= budget:
            high = middle
        else:
            low = middle + 1
    return encode(text[starts[low]:])


# Parsers for free generation (the study's decoding); constrained decoding never needs them.

_JSON_OBJECT = re.compile(r"\{.*?\}", re.S)


def parse_harmonize(generated: str) -> str | None:
    match = _JSON_OBJECT.search(generated)
    try:
        value = next(iter(json.loads(match.group(0)).values())) if match else None
    except (json.JSONDecodeError, StopIteration, AttributeError):
        return None
    return value if value in SERIES_LABELS else None


def parse_labels(generated: str) -> dict[str, str] | None:
    match = _JSON_OBJECT.search(generated)
    try:
        data = json.loads(match.group(0)) if match else None
    except json.JSONDecodeError:
        return None
    if not isinstance(data, dict) or any(data.get(k) not in YES_NO for k in LABEL_KEYS):
        return None
    return {k: data[k] for k in LABEL_KEYS}


def parse_impression(generated: str) -> str:
    text = generated.strip()
    if text.upper().startswith(IMPRESSION_PREFIX):
        text = text[len(IMPRESSION_PREFIX):]
    return " ".join(text.split())
