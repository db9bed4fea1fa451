"""Inference speed: the engine against the study's decoding, same model, same device, same run.

    python -m bench.inference [--model embedded] [--descriptions 256] [--reports 64] [--known 1000] [--threads N]
                              [--json out.json]

The engine scores the allowed answers with shared key-value caches (harmonize, label) and writes
impressions greedily, or as the consensus of the greedy one and sampled ones (slm/consensus.py, the
default; timed in its own row against the study's impressions/s, and with labeling as the report
job's rate, reports/s); the study's decoding is HF generate with 5 beams and sampling, then the
parsers, bounded by the longest valid answer. Rows: the embedded model on the CPU (a fresh model of
the embedded size when slm/default_model/ has not been built), and an OPT-350m-shaped model with
random weights on the GPU when CUDA is available. Inputs: real series descriptions and Open-i dev
reports from ../shared/data. A note gives the batched harmonization rate again with --known site
corrections (generated descriptions) for a model that reads labeled neighbours (slm/neighbours.py).
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import os
import time
from pathlib import Path

import torch
from transformers import OPTConfig, OPTForCausalLM

from bench.study_decode import study_decode
from slm.engine import EMBEDDED_MODEL, Engine, ModelUnavailable, load_engine
from slm.neighbours import Neighbours
from slm.tasks import FINDINGS, HARMONIZE, LABEL, SERIES_LABELS, YES_NO, report_text, target_pieces
from training.data import DATA_ROOT as DATA
from training.series_generator import generate
from training.scratch import new_opt_model
from training.tokenizer import train_tokenizer

BATCH = 32
# facebook/opt-350m's dimensions (its config.json), for a same-shaped model with random weights.
OPT_350M = dict(hidden_size=1024, num_hidden_layers=24, ffn_dim=4096, num_attention_heads=16, word_embed_proj_dim=512,
                vocab_size=50272, max_position_embeddings=2048, do_layer_norm_before=False, activation_function="relu")


def load_inputs(descriptions: int, reports: int) -> tuple[list[str], list[str], list[str]]:
    """Series descriptions, full reports (to label) and reports without their impression (to write one)."""
    with open(DATA / "series" / "real_public.csv", newline="", encoding="utf-8") as f:
        series = [row["description"] for row in csv.DictReader(f)]
    with open(DATA / "openi" / "reports.csv", newline="", encoding="utf-8") as f:
        dev = [row for row in csv.DictReader(f) if row["split"] == "dev" and row["findings"]]
    full = [report_text(row) for row in dev]
    without = [report_text(row, include_impression=False) for row in dev]
    return (series * (descriptions // len(series) + 1))[:descriptions], full[:reports], without[:reports]


def cpu_engine(path: str) -> tuple[Engine, str]:
    """The model to time on the CPU; a fresh one of the embedded size when the embedded one is not built."""
    try:
        return load_engine(path, device="cpu", batch_size=BATCH), f"model {path}"
    except ModelUnavailable:
        if path != "embedded":
            raise
        with open(DATA / "openi" / "reports.csv", newline="", encoding="utf-8") as f:
            texts = [report_text(row) for row in csv.DictReader(f) if row["split"] == "train"]
        # Answers too, as the embedded model's tokenizer sees them in its training text.
        answers = [" ".join(target_pieces(HARMONIZE, label, label)) for label in SERIES_LABELS]
        answers += [" ".join(target_pieces(LABEL, "", {key: yes for key in FINDINGS})) for yes in YES_NO]
        tokenizer = train_tokenizer(texts + answers * 10)
        model = new_opt_model(tokenizer, size="embedded")
        note = f"fresh embedded-size model, random weights ({EMBEDDED_MODEL} not built)"
        return Engine(model, tokenizer, "embedded-size-random", device="cpu", batch_size=BATCH), note


def opt_350m_engine(tokenizer) -> Engine:
    torch.manual_seed(0)
    config = OPTConfig(pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                       eos_token_id=tokenizer.eos_token_id, **OPT_350M)
    return Engine(OPTForCausalLM(config), tokenizer, "opt-350m-shaped-random", device="cuda", batch_size=BATCH)


def timed(engine: Engine, work) -> tuple[float, object]:
    if engine.device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    result = work()
    if engine.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, result


def invalid(outputs) -> str:
    return f"{sum(output is None for output in outputs)}/{len(outputs)}"


def measure(engine: Engine, descriptions: list[str], reports: list[str], without: list[str], single: int) -> list[dict]:
    """One row per measure: engine and study rates (items or tokens per second) and the study's invalid outputs."""
    engine.harmonize(descriptions[:4]), engine.label(reports[:2]), engine.impression_tokens(without[:2])  # warm up
    torch.manual_seed(0)
    rows = []

    def one_at_a_time(run):
        return [run([text]) for text in descriptions[:single]]

    seconds, _ = timed(engine, lambda: one_at_a_time(engine.harmonize))
    study_seconds, outputs = timed(engine, lambda: one_at_a_time(lambda t: study_decode(engine, "harmonize", t)[0]))
    rows.append(dict(measure="harmonizations/s, batch 1", engine=single / seconds, study=single / study_seconds,
                     invalid=invalid([o for batch in outputs for o in batch])))

    seconds, _ = timed(engine, lambda: engine.harmonize(descriptions))
    study_seconds, (outputs, _) = timed(engine, lambda: study_decode(engine, "harmonize", descriptions))
    rows.append(dict(measure=f"harmonizations/s, batch {BATCH}", engine=len(descriptions) / seconds,
                     study=len(descriptions) / study_seconds, invalid=invalid(outputs)))

    labeling, _ = timed(engine, lambda: engine.label(reports))
    study_labeling, (outputs, _) = timed(engine, lambda: study_decode(engine, "label", reports))
    rows.append(dict(measure=f"reports labeled/s, batch {BATCH}", engine=len(reports) / labeling,
                     study=len(reports) / study_labeling, invalid=invalid(outputs)))

    greedy = copy.copy(engine)  # the same model, writing the greedy impression alone
    greedy.impression_samples = 0
    seconds, generated = timed(engine, lambda: greedy.impression_tokens(without))
    study_seconds, (_, study_tokens) = timed(engine, lambda: study_decode(engine, "impression", without))
    rows.append(dict(measure=f"impression tokens/s, greedy, batch {BATCH}", engine=sum(map(len, generated)) / seconds,
                     study=study_tokens / study_seconds, invalid="n/a"))
    written = "greedy"
    if engine.impression_samples:
        written = f"consensus of {engine.impression_samples + 1}"
        seconds, _ = timed(engine, lambda: engine.impression_tokens(without))
        rows.append(dict(measure=f"impressions/s, {written}", engine=len(without) / seconds,
                         study=len(without) / study_seconds, invalid="n/a"))
    # The report job's model work: each report labeled, and its impression written.
    rows.append(dict(measure=f"reports/s, labels and impression ({written})",
                     engine=len(reports) / (labeling + seconds), study=len(reports) / (study_labeling + study_seconds),
                     invalid="n/a"))
    return rows


def with_known(engine: Engine, descriptions: list[str], known: int) -> str:
    """The batched harmonization rate with and without `known` corrections to find neighbours among."""
    site = Neighbours((text, label) for text, label, _ in generate(known, seed=1))
    without, _ = timed(engine, lambda: engine.harmonize(descriptions))
    seconds, _ = timed(engine, lambda: engine.harmonize(descriptions, site))
    return (f"with {len(site)} corrections known (labeled neighbours): {len(descriptions) / seconds:.1f} "
            f"harmonizations/s at batch {BATCH}, {without / seconds:.2f}x the rate without them in the same run")


def table(results: list[dict]) -> str:
    lines = ["| model | device | measure | engine | study decoding | engine / study | study invalid |",
             "|---|---|---|---:|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r['model']} | {r['device']} | {r['measure']} | {r['engine']:.1f} | {r['study']:.2f} "
                     f"| {r['engine'] / r['study']:.1f}x | {r['invalid']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="embedded", help="model timed on the CPU: embedded, a folder or hub id")
    parser.add_argument("--descriptions", type=int, default=256, help="descriptions harmonized in batches")
    parser.add_argument("--single", type=int, default=32, help="descriptions harmonized one at a time")
    parser.add_argument("--reports", type=int, default=64, help="reports labeled, and impressions written")
    parser.add_argument("--known", type=int, default=1000, help="corrections known, for the note on neighbours")
    parser.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    descriptions, reports, without = load_inputs(args.descriptions, args.reports)

    results, notes = [], []
    engine, note = cpu_engine(args.model)
    notes.append(f"CPU: {note}; {torch.get_num_threads()} torch threads, load average {os.getloadavg()[0]:.1f} "
                 f"on {os.cpu_count()} cores")
    for row in measure(engine, descriptions, reports, without, args.single):
        results.append(dict(model=engine.version, device="cpu", **row))
    if engine.neighbours and args.known:
        notes.append(with_known(engine, descriptions, args.known))
    if torch.cuda.is_available():
        gpu = opt_350m_engine(engine.tokenizer)
        notes.append(f"GPU: {torch.cuda.get_device_name()}, {gpu.model.dtype}; OPT-350m-shaped, random weights, "
                     "with the CPU model's tokenizer")
        for row in measure(gpu, descriptions, reports, without, args.single):
            results.append(dict(model=gpu.version, device="cuda", **row))
    else:
        notes.append("GPU: skipped, CUDA is not available here")

    print(table(results))
    print()
    for line in notes:
        print(f"- {line}")
    if args.json:
        args.json.write_text(json.dumps({"results": results, "notes": notes}, indent=2))


if __name__ == "__main__":
    main()
