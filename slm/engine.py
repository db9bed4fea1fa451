"""The inference engine: one causal model answering the three tasks with outputs that are always valid.

Choice tasks (harmonize, label) never parse generated text: the engine scores the allowed answers
after the prompt and the fixed target piece, so a label is always one of the seven and the labels
are always the 14 keys. The prompt's key-value cache is computed once and reused: across the
candidates of a choice, from one label slot to the next, and from one generated token to the next.
The instruction part of every prompt is shared by all inputs of a task, so its cache is computed
once per engine and only the input and what follows it run per batch.
"""

from __future__ import annotations

import hashlib
import json
import logging
import unicodedata
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.utils import logging as transformers_logging

from slm.batch import Batch
from slm.consensus import SAMPLES as IMPRESSION_SAMPLES, TEMPERATURE as SAMPLE_TEMPERATURE, TOP_TOKENS, most_agreed
from slm.harmonizer import Prediction
from slm.hints import hints_for, reads_hints, rule_answers, stated_findings_stand, sure_rules_stand
from slm.neighbours import Neighbours
from slm.tasks import (
    HARMONIZE,
    IMPRESSION,
    IMPRESSION_MAX_TOKENS,
    IMPRESSION_PREFIX,
    LABEL,
    LABEL_KEYS,
    NO_FINDING,
    SERIES_LABELS,
    Task,
    encode_piece,
    encode_prompt,
    fit_text,
    harmonize_pieces,
    label_pieces,
    no_finding,
)

# transformers draws a "Loading weights" / "Writing model shards" bar at every load and save: a line of
# noise in every command and log; slmnode says what it loads itself.
transformers_logging.disable_progress_bar()

log = logging.getLogger(__name__)

EMBEDDED_MODEL = Path(__file__).parent / "default_model"
BUILD_EMBEDDED = "python -m training.train embedded"
# A consensus step feeds one token per sequence where a prompt pass feeds hundreds, so its batches
# hold this many times batch_size sequences: the per-step overhead is shared by several reports
# (dev, embedded model, 2 cores: 8.8 impressions/s with one report a batch, 13.8 with eight).
CONSENSUS_WIDTH = 8


class ModelUnavailable(Exception):
    """No usable model at the path asked for (for example, the embedded one has not been built)."""


# Loading


def load_engine(
    path: str = "embedded",
    adapter: str | None = None,
    device: str = "auto",
    batch_size: int = 32,
    impression_max_tokens: int = IMPRESSION_MAX_TOKENS,
    impression_samples: int = IMPRESSION_SAMPLES,
) -> Engine:
    """An engine for a hub id or model folder, plus an optional LoRA adapter folder merged into it.

    `path` may also be an adapter folder whose adapter_config.json names its base model.
    """
    model, tokenizer, name, prompt_folder = _load_model(path, adapter)
    return Engine(model, tokenizer, name, device=device, batch_size=batch_size,
                  impression_max_tokens=impression_max_tokens, impression_samples=impression_samples,
                  rule_hints=reads_hints(prompt_folder),
                  neighbours=reads_hints(prompt_folder, "neighbours"))


def _load_model(path: str, adapter: str | None):
    folder = model_folder(path)
    if adapter is None and folder is not None and (folder / "adapter_config.json").is_file():
        base = json.loads((folder / "adapter_config.json").read_text())["base_model_name_or_path"]
        return _load_model(_relative_to(base, folder), str(folder))
    source = str(folder) if folder is not None else path
    name = "embedded" if path == "embedded" else Path(path.rstrip("/")).name
    adapter_folder = model_folder(adapter) if adapter else None
    if adapter and adapter_folder is None:
        raise ModelUnavailable(f"{adapter}: no LoRA adapter folder there")
    tokenizer_source = adapter_folder if adapter_folder and _has_tokenizer(adapter_folder) else source
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_source))
        model = AutoModelForCausalLM.from_pretrained(source)
        if adapter_folder is not None:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, str(adapter_folder)).merge_and_unload()
            name = f"{name}+{adapter_folder.name}"
    except (OSError, ValueError) as exc:
        with_adapter = f" with adapter {adapter!r}" if adapter else ""
        raise ModelUnavailable(f"cannot load model {path!r}{with_adapter}: {exc}") from None
    # The prompt the model was trained with (prompt.json): an adapter's own word wins over its base's.
    prompt_folder = adapter_folder if adapter_folder is not None else folder
    return model, tokenizer, name, prompt_folder


def model_folder(path: str) -> Path | None:
    """The local folder for `path`, None for a hub id; the embedded model must have been built."""
    if path == "embedded":
        if not (EMBEDDED_MODEL / "config.json").is_file() and not (EMBEDDED_MODEL / "adapter_config.json").is_file():
            raise ModelUnavailable(
                f"the embedded model has not been built ({EMBEDDED_MODEL} holds no model); "
                f"build it with `{BUILD_EMBEDDED}` or give a model folder or hub id"
            )
        return EMBEDDED_MODEL
    folder = Path(path).expanduser()
    return folder if folder.is_dir() else None


def _relative_to(base: str, adapter_folder: Path) -> str:
    """An adapter's base as written in its config; a relative folder is looked up next to the adapter too."""
    beside = adapter_folder / base
    return str(beside) if not Path(base).is_absolute() and not Path(base).exists() and beside.is_dir() else base


def _has_tokenizer(folder: Path) -> bool:
    return (folder / "tokenizer.json").is_file() or (folder / "tokenizer_config.json").is_file()


def model_version(model, tokenizer, name: str) -> str:
    """`name-<12 hex>`: sha256 over the config, the vocabulary and every weight, so any change shows."""
    config = {k: v for k, v in model.config.to_dict().items()
              if not k.startswith("_") and k not in ("transformers_version", "dtype", "torch_dtype")}
    digest = hashlib.sha256(json.dumps([config, sorted(tokenizer.get_vocab().items())], default=str).encode())
    for key, tensor in sorted(model.state_dict().items()):
        tensor = tensor.detach().to("cpu", torch.float32).contiguous()
        digest.update(f"{key}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.view(torch.uint8).numpy().data)
    return f"{name}-{digest.hexdigest()[:12]}"


def pick_device(device: str = "auto") -> tuple[torch.device, torch.dtype]:
    """CUDA when asked or present (half precision: bf16 where supported, else fp16); CPU in fp32."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(device)
    except RuntimeError:
        raise ValueError(f"unknown device {device!r}: auto, cpu, cuda, cuda:1, ...") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device} asked for, but CUDA is not available here")
    if device.type == "cuda":
        return device, torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return device, torch.float32


# Answers the model may give


@dataclass(frozen=True)
class _Choice:
    """The token ids of the allowed answers at one slot, as the model was trained to write them.

    `feeds` are what must run after the context to score every token of every answer: answers that
    share their first tokens ("T","1" and "T","2") share one feed, single-token answers need none.
    """

    options: tuple[str, ...]
    ids: tuple[tuple[int, ...], ...]
    feeds: tuple[tuple[int, ...], ...]

    @classmethod
    def of(cls, tokenizer, options: Sequence[str], closing: str) -> _Choice:
        ids = [tuple(encode_piece(tokenizer, option)) for option in options]
        # An answer whose tokens begin another's ("T" before "T1") must also be scored as ending there.
        if any(a != b and b[: len(a)] == a for a in ids for b in ids):
            close = encode_piece(tokenizer, closing)[0]
            ids = [option + (close,) for option in ids]
        heads = {option[:-1] for option in ids if len(option) > 1}
        feeds = sorted(h for h in heads if not any(o != h and o[: len(h)] == h for o in heads))
        return cls(tuple(options), tuple(ids), tuple(feeds))

    def feed_of(self, option: tuple[int, ...]) -> int:
        return next(i for i, feed in enumerate(self.feeds) if feed[: len(option) - 1] == option[:-1])


# The engine


class Engine:
    """A loaded model answering the three tasks; an Engine is also a Harmonizer."""

    def __init__(self, model, tokenizer, name: str, device: str = "auto", batch_size: int = 32,
                 impression_max_tokens: int = IMPRESSION_MAX_TOKENS, impression_samples: int = IMPRESSION_SAMPLES,
                 rule_hints: bool = False, neighbours: bool = False):
        model = model.float().eval()
        self.rule_hints = rule_hints  # the model was trained reading the rules' answer (slm/hints.py)
        self.neighbours = neighbours  # ... and a description's nearest labeled neighbour (slm/neighbours.py)
        self.version = model_version(model, tokenizer, name)
        self.device, dtype = pick_device(device)
        self.model = model.to(self.device, dtype)
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.impression_max_tokens = impression_max_tokens
        self.impression_samples = impression_samples  # 0: greedy decoding alone
        self.max_positions = getattr(model.config, "max_position_embeddings", None) or tokenizer.model_max_length
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self._prefixes: dict[str, tuple[list[int], Batch]] = {}

        harmonize_closing = harmonize_pieces("")[2]
        self.harmonize_choice = _Choice.of(tokenizer, SERIES_LABELS, harmonize_closing)
        pieces = label_pieces()
        self.label_pieces = [encode_piece(tokenizer, piece) for piece in pieces[0::2]]
        self.label_choices = [_Choice.of(tokenizer, pieces[i], pieces[i + 1]) for i in range(1, len(pieces), 2)]
        self.impression_prefix = encode_piece(tokenizer, IMPRESSION_PREFIX)
        self._stops: torch.Tensor | None = None
        self._ends: frozenset[int] | None = None

    # Public tasks

    @torch.inference_mode()
    def harmonize(self, texts: Sequence[str], known: Neighbours | None = None) -> list[Prediction]:
        """The model's answers; a model trained with rule hints keeps the rules' answer where they are
        sure (slm.hints.sure_rules_stand)."""
        probs = [scores.softmax(-1) for scores in self.harmonize_scores(texts, known)]
        answers = [Prediction(SERIES_LABELS[int(p.argmax())], round(float(p.max()), 6), self.version) for p in probs]
        return sure_rules_stand(texts, answers, known) if self.rule_hints else answers

    @torch.inference_mode()
    def harmonize_scores(self, texts: Sequence[str], known: Neighbours | None = None) -> torch.Tensor:
        """Log-probability of each of the seven labels as the answer, [N, 7] (before normalizing over them).
        `known`: labeled descriptions (a site's corrections) whose nearest one a model trained with
        neighbours reads; other models ignore it."""
        neighbours = known.hints(texts) if known is not None and self.neighbours else [None] * len(texts)
        scores = self._batched(list(zip(texts, neighbours)), self._harmonize_rows, self._harmonize_scores)
        return torch.stack(scores) if scores else torch.empty((0, len(SERIES_LABELS)))

    def label(self, texts: Sequence[str]) -> list[dict[str, str]]:
        return [labels for labels, _ in self.label_with_scores(texts)]

    @torch.inference_mode()
    def label_with_scores(self, texts: Sequence[str]) -> list[tuple[dict[str, str], dict[str, float]]]:
        """The 14 Yes/No labels and, per key, the model's probability of Yes at that point of the answer. A
        model trained with rule hints answers Yes wherever the rule labeler reads a finding as stated
        (slm.hints.stated_findings_stand)."""
        reports = []
        for text in texts:  # the rule labeler once per report
            ruled = rule_answers(text) if self.rule_hints else None
            reports.append((text, self._label_pieces(ruled), ruled))
        return self._batched(reports, self._label_rows, self._label_walk)

    def impression(self, texts: Sequence[str]) -> list[str]:
        return [self.impression_text(ids) for ids in self.impression_tokens(texts)]

    @torch.inference_mode()
    def impression_tokens(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each impression as written, after "IMPRESSION:" and before what stopped it: the
        greedy one, or with impression_samples, the consensus of it and that many sampled ones."""
        if not self.impression_samples:
            return self._batched(texts, self._impression_rows, self._greedy)
        reports_per_batch = max(1, self.batch_size * CONSENSUS_WIDTH // (self.impression_samples + 1))
        return self._batched(texts, self._impression_rows, self._consensus, reports_per_batch)

    def impression_text(self, ids: Sequence[int]) -> str:
        return " ".join(self.tokenizer.decode(ids, skip_special_tokens=True).split())

    # Prompts, fitted to the model's context

    def _harmonize_rows(self, described: tuple[str, str | None]) -> list[int]:
        text, neighbour = described
        reserve = max(len(ids) for ids in self.harmonize_choice.ids)
        hint = hints_for(HARMONIZE, text, self.rule_hints, neighbour)[0]
        return self._fit(text, lambda t: encode_prompt(self.tokenizer, HARMONIZE, t, hint)
                         + encode_piece(self.tokenizer, harmonize_pieces(t)[0]), reserve)

    def _label_rows(self, report: tuple[str, list[list[int]], list[str] | None]) -> list[int]:
        """A report's prompt and its answer's first key; labeling prompts carry no hint (the keys do)."""
        text, pieces, _ = report
        reserve = sum(len(p) for p in pieces[1:]) + sum(max(map(len, c.ids)) for c in self.label_choices)
        return self._fit(text, lambda t: encode_prompt(self.tokenizer, LABEL, t) + pieces[0], reserve)

    def _label_pieces(self, ruled: list[str] | None) -> list[list[int]]:
        """Token ids of the fixed pieces of a labeling answer: the same for every report, or for a model
        trained with rule hints, keys that carry the rule labeler's answers for this report."""
        if ruled is None:
            return self.label_pieces
        return [encode_piece(self.tokenizer, piece) for piece in label_pieces(ruled)[0::2]]

    def _impression_rows(self, text: str) -> list[int]:
        hint = self._hint(IMPRESSION, text)
        return self._fit(text, lambda t: encode_prompt(self.tokenizer, IMPRESSION, t, hint) + self.impression_prefix,
                         self.impression_max_tokens)

    def _hint(self, task: Task, text: str) -> str | None:
        """The rules' reading of the whole text (before any cut) for the prompt, for a model trained with it."""
        return hints_for(task, text, self.rule_hints)[0]

    def _fit(self, text: str, encode: Callable[[str], list[int]], reserve: int) -> list[int]:
        """Prompt ids for `text`, dropping the start of the text if the whole would not fit the context."""
        ids = fit_text(self.tokenizer, text, encode, self.max_positions - reserve)
        if ids is None:
            raise ValueError(f"the model's context ({self.max_positions} tokens) cannot hold this task's prompt")
        return ids

    def _batched(self, inputs: Sequence, encode: Callable[..., list[int]], run: Callable,
                 batch_size: int | None = None) -> list:
        """run(rows, inputs) over batches of similar length, results back in input order."""
        rows = [encode(item) for item in inputs]
        order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
        results: list = [None] * len(rows)
        size = batch_size or self.batch_size
        for start in range(0, len(order), size):
            chunk = order[start: start + size]
            for i, result in zip(chunk, run([rows[i] for i in chunk], [inputs[i] for i in chunk])):
                results[i] = result
        return results

    # Decoding

    def _start(self, task: Task, rows: list[list[int]]) -> tuple[Batch, torch.Tensor]:
        """A batch after its prompts, reusing the cached instruction part; log-probs of the next token."""
        prefix_ids, prefix = self._prefix(task)
        shared = min(min(_common_length(row, prefix_ids), len(row) - 1) for row in rows)
        batch = prefix.head(shared, len(rows))
        return batch, batch.extend([row[shared:] for row in rows])

    def _prefix(self, task: Task) -> tuple[list[int], Batch]:
        """Ids and cache of the part of the prompt every input of `task` shares."""
        if task.name not in self._prefixes:
            a, b = encode_prompt(self.tokenizer, task, "a"), encode_prompt(self.tokenizer, task, "b")
            ids = a[: _common_length(a, b)]
            batch = Batch(self.model, [], torch.zeros((1, 0), dtype=torch.long, device=self.device), self.pad_id)
            batch.extend([ids])
            self._prefixes[task.name] = (ids, batch)
        return self._prefixes[task.name]

    def _scores(self, batch: Batch, first: torch.Tensor, choice: _Choice) -> torch.Tensor:
        """Sum of log-probs of each answer's tokens, [B, options]; `first` is the next-token log-probs."""
        scores = first[:, [option[0] for option in choice.ids]]
        if not choice.feeds:
            return scores
        # Every row's cache once per feed; each copy reads the tokens that follow in its answers.
        feeds = len(choice.feeds)
        logprobs = batch.repeated(feeds).extend([list(feed) for _ in range(len(first)) for feed in choice.feeds],
                                                pad_left=False, all_logits=True)
        logprobs = logprobs.view(len(first), feeds, *logprobs.shape[1:])
        rest = torch.zeros_like(scores)
        for j, option in enumerate(choice.ids):
            if len(option) > 1:
                f = choice.feed_of(option)
                for t, token in enumerate(option[1:]):
                    rest[:, j] += logprobs[:, f, t, token]
        return scores + rest

    def _harmonize_scores(self, rows: list[list[int]], _inputs: Sequence) -> list[torch.Tensor]:
        batch, first = self._start(HARMONIZE, rows)
        return list(self._scores(batch, first, self.harmonize_choice).cpu())

    def _label_walk(self, rows: list[list[int]], reports: Sequence[tuple]) -> list[tuple[dict[str, str], dict[str, float]]]:
        batch, logprobs = self._start(LABEL, rows)
        pieces = [report_pieces for _, report_pieces, _ in reports]
        ruled = [ruling or [None] * len(LABEL_KEYS) for _, _, ruling in reports]  # None: the model answers alone
        labels: list[dict[str, str]] = [{} for _ in rows]
        yes: list[dict[str, float]] = [{} for _ in rows]
        for slot, (key, choice) in enumerate(zip(LABEL_KEYS, self.label_choices)):
            probs = self._scores(batch, logprobs, choice).softmax(-1).cpu()
            for i, p in enumerate(probs):
                yes[i][key] = round(float(p[0]), 6)
                answer = choice.options[int(p.argmax())]
                stated = stated_findings_stand(answer, ruled[i][slot])
                labels[i][key] = no_finding(labels[i]) if key == NO_FINDING else stated
            if slot + 1 < len(self.label_choices):
                answers = [encode_piece(self.tokenizer, labels[i][key]) for i in range(len(rows))]
                logprobs = batch.extend([answer + pieces[i][slot + 1] for i, answer in enumerate(answers)])
        return list(zip(labels, yes))

    def _greedy(self, rows: list[list[int]], _texts: Sequence[str]) -> list[list[int]]:
        batch, logprobs = self._start(IMPRESSION, rows)
        return self._write(batch, logprobs, lambda scores, _rows: scores.argmax(-1))

    def _consensus(self, rows: list[list[int]], _texts: Sequence[str]) -> list[list[int]]:
        """Each report's greedy impression and impression_samples sampled ones, written together from one
        prompt cache; the one that agrees most with the others is kept (slm/consensus.py). A report's
        samples are drawn from a generator seeded by its prompt, so a report always gets the same
        impression, whatever else is in its batch."""
        copies = self.impression_samples + 1
        batch, logprobs = self._start(IMPRESSION, rows)
        batch, logprobs = batch.repeated(copies), logprobs.repeat_interleave(copies, 0)
        generators = [torch.Generator().manual_seed(zlib.crc32(str(row).encode())) for row in rows]
        sampled = torch.arange(len(rows) * copies) % copies != 0  # copy 0 of each report is the greedy one

        def pick(scores: torch.Tensor, writing: torch.Tensor) -> torch.Tensor:
            """Gumbel-max among the TOP_TOKENS likeliest tokens: argmax(scores / T + Gumbel noise) is a
            draw from softmax(scores / T) (noise for every token of the vocabulary cost a fifth of the
            decoding time). Each report's generator draws for all its copies at every step, finished or
            not, so its draws never depend on what else is in the batch."""
            top, tokens = scores.topk(min(TOP_TOKENS, scores.shape[-1]), dim=-1)
            uniform = torch.cat([torch.rand(copies, top.shape[-1], generator=g) for g in generators])[writing]
            gumbel = -torch.log(-torch.log(uniform.clamp(1e-10, 1 - 1e-7))).to(scores.device)
            drawn = tokens.gather(-1, (top / SAMPLE_TEMPERATURE + gumbel).argmax(-1, keepdim=True))[:, 0]
            return torch.where(sampled[writing].to(scores.device), drawn, scores.argmax(-1))

        written = self._write(batch, logprobs, pick)
        groups = [written[i * copies:(i + 1) * copies] for i in range(len(rows))]
        return [group[most_agreed([self.impression_text(ids) for ids in group])] for group in groups]

    def _write(self, batch: Batch, logprobs: torch.Tensor,
               pick: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> list[list[int]]:
        """Decoding with pick(log-probs, indices of the rows still writing) -> their next tokens. A row
        stops at a stop token, or before a sentence or a run of LOOP_NGRAM tokens that repeats an
        earlier one (a small model can loop on "Recommend follow-up." until the budget ends). Rows
        that stopped leave the batch once they are a quarter of it (each leaving copies the cache)."""
        stops, banned = self._stop_tokens()
        stop_ids = set(stops.tolist())
        ends = self._sentence_ends()
        budget = max(1, min(self.impression_max_tokens, self.max_positions - batch.mask.shape[1]))
        generated: list[list[int]] = [[] for _ in range(len(logprobs))]
        writes = torch.arange(len(generated))  # the impression each row of the batch writes
        alive = list(range(len(generated)))  # the rows of the batch still writing
        for step in range(budget):
            logprobs = logprobs[alive]
            logprobs[:, banned] = float("-inf")
            if step == 0:  # an impression is never empty
                logprobs[:, stops] = float("-inf")
            tokens = pick(logprobs, writes[alive]).cpu().tolist()
            going, feed = [], [[] for _ in writes]
            for row, token in zip(alive, tokens):
                i = int(writes[row])
                generated[i].append(token)
                keep = repeated_sentence(generated[i], ends) if token in ends else repeated_words(generated[i])
                if keep is not None:
                    del generated[i][keep:]
                elif token not in stop_ids:
                    going.append(row)
                    feed[row] = [token]
            if not going or step + 1 == budget:
                break
            if len(going) <= 0.75 * len(writes):
                kept = torch.tensor(going)
                batch, writes, feed = batch.rows(kept), writes[kept], [feed[row] for row in going]
                going = list(range(len(going)))
            logprobs, alive = batch.extend(feed), going
        return [ids[:-1] if ids[-1] in stop_ids else ids for ids in generated]

    def _sentence_ends(self) -> frozenset[int]:
        """Tokens that end a sentence: their text ends with a full stop."""
        if self._ends is None:
            pieces = self.tokenizer.batch_decode([[i] for i in range(len(self.tokenizer))])
            self._ends = frozenset(i for i, piece in enumerate(pieces) if piece.rstrip().endswith("."))
        return self._ends

    def _stop_tokens(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokens that end an impression (end of sequence, any newline) and tokens it never contains:
        special ones, the JSON of the other tasks' answers (no Open-i impression has a quote or a
        brace; a small model can drift into a labeling answer's keys after a short report), and
        control characters (a sampled byte token can be NUL, which PostgreSQL refuses to store)."""
        if self._stops is None:
            size = len(self.tokenizer)
            pieces = self.tokenizer.batch_decode([[i] for i in range(size)])
            stops = {i for i, piece in enumerate(pieces) if "\n" in piece} | {self.tokenizer.eos_token_id}
            special = set(self.tokenizer.all_special_ids) - {self.tokenizer.eos_token_id}
            json = {i for i, piece in enumerate(pieces) if any(c in piece for c in '"{}')}
            control = {i for i, piece in enumerate(pieces) if any(unicodedata.category(c) == "Cc" for c in piece)}
            vocab = self.model.get_output_embeddings().weight.shape[0]
            self._stops = torch.tensor(sorted(stops))
            banned = special | json | (control - stops) | set(range(size, vocab))
            self._banned = torch.tensor(sorted(banned), dtype=torch.long)
        return self._stops, self._banned


def repeated_sentence(ids: Sequence[int], ends: frozenset[int]) -> int | None:
    """If the last sentence of `ids` (it ends with its last token, one of `ends`) was written before,
    the length to keep (the ids before it); else None."""
    starts = [0] + [k + 1 for k, token in enumerate(ids[:-1]) if token in ends]
    last = tuple(ids[starts[-1]:])
    earlier = {tuple(ids[a:b]) for a, b in zip(starts, starts[1:])}
    return starts[-1] if last in earlier else None


LOOP_NGRAM = 4  # tokens: a run this long written twice in one impression is a loop ("or scarring or scarring")


def repeated_words(ids: Sequence[int], n: int = LOOP_NGRAM) -> int | None:
    """If the last n ids were written before (overlapping the end not counted), the length to keep
    (the ids before them); else None. Open-i impressions hardly repeat four tokens; a looping small
    model does, within a sentence that never ends."""
    if len(ids) < 2 * n:
        return None
    last = tuple(ids[-n:])
    earlier = {tuple(ids[k: k + n]) for k in range(len(ids) - 2 * n + 1)}
    return len(ids) - n if last in earlier else None


def _common_length(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n
