"""The rules' reading of an input, shown to a model trained with it, so the model learns where they fail.

The rule harmonizer and the rule labeler are right on most plain text and wrong in ways a model can
learn (glued words, folder-name forms, phrasing they do not know); a model that reads their answer
next to the input copies it where it holds and overrides it where its own reading is surer. A
description's hint and a report's positive findings go in the prompt; the labeler's answer for each
finding goes in the answer's key for that finding (slm.tasks.label_pieces), right before the model's.
Whether a model reads hints is part of the model: its folder's prompt.json says {"rule_hints": true}
(and {"neighbours": true} for a model that also reads a description's nearest labeled neighbour,
slm/neighbours.py), written by the trainer, read by the engine, so a model is always asked the way it
was trained.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Sequence

from slm.harmonizer import Prediction
from slm.neighbours import Neighbours
from slm.report_rules import RuleLabeler
from slm.rules import decide
from slm.tasks import FINDINGS, HARMONIZE, LABEL, LABEL_KEYS, Task

PROMPT_FILE = "prompt.json"
SURE = 0.85  # a rule decision at least this confident is shown plain; below, with a question mark


def rule_hint(task: Task, text: str) -> str | None:
    """What the rules say of `text`, for the prompt: a label for a description, the positive findings
    for a report to write an impression for. Labeling carries the rules' answers in the answer's own
    keys instead (rule_answers), so its prompt has no hint."""
    if task is HARMONIZE:
        decision = decide(text)
        if decision.reason in ("no rule matched", "empty description"):
            return "none"
        return decision.label if decision.confidence >= SURE else f"{decision.label}?"
    if task is LABEL:
        return None
    labels = _labeler().label([text])[0]
    return ", ".join(finding for finding in FINDINGS if labels[finding] == "Yes") or "none"


def leaves_room(hint: str | None) -> bool:
    """Does a description's rule hint leave room for a neighbour: no hint, none read, or unsure ("FLAIR?")?"""
    return not hint or hint == "none" or hint.endswith("?")


def sure_rules_stand(texts: Sequence[str], predictions: list[Prediction], known: Neighbours | None = None) -> list[Prediction]:
    """A hinted model's answers, with the rules' answer wherever the rules are sure (a plain hint) and the
    model says otherwise, unless the site overruled a sure rule reading on a similar description with
    the model's answer (a correction the rules read otherwise: what retraining taught the model).

    Why: on 15,000 generated descriptions of seeds the shipped model never saw, it disagreed with sure
    rules 47 times and was right on none of them (the rules on 46): a small model misreads a plain
    name now and then (`dADC_DWI_SENSE` as DWI, `16-T2W_FSE-33114` as T1), which is the issue's
    "confidently wrong on plain ones". Where the rules are unsure or read nothing it was right 30 times
    to their 13, so there the model stands (python -m training.sure_rules)."""
    doubted = [i for i, (text, p) in enumerate(zip(texts, predictions)) if _against_sure_rules(text, p.label)]
    if not doubted:
        return predictions
    overruling = _overruling(known)
    backed = overruling.nearest([texts[i] for i in doubted]) if overruling else [None] * len(doubted)
    answers = list(predictions)
    for i, near in zip(doubted, backed):
        if near is None or near[0] != predictions[i].label:
            reading = decide(texts[i])
            answers[i] = Prediction(reading.label, reading.confidence, predictions[i].model_version)
    return answers


def stated_findings_stand(answer: str, ruled: str | None) -> str:
    """A hinted model's Yes/No for one finding, Yes wherever the rule labeler reads it (`ruled`) as stated.

    Why: in 636 short reports, each an invented finding sentence beside a normal one that does not deny
    it (`Tiny pneumothorax at the left apex. Heart size normal.`, tests/slm/test_invented_findings.py),
    the shipped model said No 34 times to the finding the sentence states, which the rules read each
    time; its one Yes against the rules' No was wrong too. On the 150 gold dev reports the two never
    disagree, so no held-out figure moves. A short report, unlike Open-i's, can talk a small model out
    of what it plainly says; "every finding answered Yes where the report says so" is what the rules
    read. Where the rules read nothing, the model's Yes stands."""
    return "Yes" if ruled == "Yes" else answer


def _against_sure_rules(text: str, label: str) -> bool:
    """Do the rules read `text` surely (a plain hint) as something other than `label`?"""
    reading = decide(text)
    return reading.confidence >= SURE and reading.label != label


def _overruling(known: Neighbours | None) -> Neighbours | None:
    """The known descriptions whose label contradicts a sure rule reading of them."""
    if not known:
        return None
    pairs = [(text, label) for text, label in zip(known.texts, known.labels) if _against_sure_rules(text, label)]
    return Neighbours(pairs) if pairs else None


def rule_answers(text: str) -> list[str]:
    """The rule labeler's 14 Yes/No answers for a report, in LABEL_KEYS order."""
    labels = _labeler().label([text])[0]
    return [labels[key] for key in LABEL_KEYS]


def hints_for(task: Task, text: str, rule_hints: bool, neighbour: str | None = None) -> tuple[str | None, list[str] | None]:
    """(prompt hint, rule answers in the labeling keys) for a model trained with or without rule hints.

    A description's nearest labeled neighbour (slm/neighbours.py, `FLAIR 0.8`) follows the rules'
    reading only where the rules are unsure or read nothing: where they are sure, they were right on
    real descriptions each time a neighbour disagreed, and a small model shown both followed the
    neighbour too often. Neighbours fill the rules' gaps (a site's own words); a site's convention
    that contradicts a sure rule is learned by retraining on its corrections."""
    hint = rule_hint(task, text) if rule_hints else None
    if neighbour is not None and leaves_room(hint):
        hint = f"{hint} | known: {neighbour}" if hint else f"known: {neighbour}"
    return hint, rule_answers(text) if rule_hints and task is LABEL else None


@lru_cache(maxsize=1)
def _labeler() -> RuleLabeler:
    return RuleLabeler()


def reads_hints(folder: Path | None, what: str = "rule_hints") -> bool:
    """Was the model in `folder` trained with rule hints (what="neighbours": with neighbours)? No
    prompt.json: no, as every earlier model."""
    path = folder / PROMPT_FILE if folder is not None else None
    return bool(path and path.is_file() and json.loads(path.read_text(encoding="utf-8")).get(what))


def write_prompt_file(folder: Path, rule_hints: bool, neighbours: bool = False) -> None:
    prompt = {"rule_hints": rule_hints, "neighbours": neighbours}
    (folder / PROMPT_FILE).write_text(json.dumps(prompt) + "\n", encoding="utf-8")
