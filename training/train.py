"""The trainer: one recipe (a shipped name or a YAML file) in, one model folder out.

    python -m training.train embedded [key=value ...]   # e.g. epochs=2 lora.rank=32

Reads top to bottom: settings, examples, tokenizer and model, token ids, then the loop (AdamW, warmup
and decay, gradient accumulation and clipping, autocast on a GPU) with checkpoints, resume and loss
curves. The loss counts response tokens only: the prompt is context, not something to learn to write.
The output folder is what slm.engine.load_engine loads: a full model with its tokenizer (from scratch),
or a LoRA adapter naming its base, with the tokenizer.
"""

from __future__ import annotations

import csv
import json
import math
import os
import random
import sys
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
import yaml
from tqdm.auto import tqdm

from slm.engine import ModelUnavailable, model_folder, pick_device
from slm.hints import hints_for, reads_hints, write_prompt_file
from slm.tasks import TASKS, encode_prompt, encode_target, fit_text, target_pieces
from training.data import Example, recipe_examples
from training.recipe import TrainConfig, load_config

IGNORE = -100  # label of tokens the loss skips (prompt and padding)


# --- token ids --------------------------------------------------------------------------------------------


def encode_example(
    tokenizer, example: Example, max_length: int, rule_hints: bool = False
) -> tuple[list[int], list[int]] | None:
    """(input_ids, labels) with the prompt labelled IGNORE; the target is never cut, the input text may be.

    With rule_hints the prompt (and a labeling answer's keys) carry the rules' reading of the whole text,
    as the engine will ask.
    """
    task = TASKS[example.task]
    hint, rule_answers = hints_for(task, example.text, rule_hints, example.known)
    target = encode_target(tokenizer, target_pieces(task, example.text, example.answer, rule_answers))
    prompt = fit_text(tokenizer, example.text, lambda t: encode_prompt(tokenizer, task, t, hint), max_length - len(target))
    if prompt is None:
        return None
    return prompt + target, [IGNORE] * len(prompt) + target


def collate(rows: Sequence[tuple[list[int], list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    # Right padding: OPT derives positions from the attention mask, so padded rows keep their positions.
    width = max(len(ids) for ids, _ in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (ids, lab) in enumerate(rows):
        input_ids[i, : len(ids)] = torch.tensor(ids)
        labels[i, : len(lab)] = torch.tensor(lab)
        attention_mask[i, : len(ids)] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def epoch_batches(lengths: Sequence[int], batch_size: int, seed: int, group_by_length: bool) -> list[list[int]]:
    """Batches of row indices for one epoch, the same for the same seed (resume relies on it).

    Grouping by length sorts each window of 50 batches so rows of a batch have similar lengths (less
    padding: a labeling prompt is five times a harmonization prompt), then shuffles the batches.
    """
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    if group_by_length:
        window = batch_size * 50
        windows = [order[s : s + window] for s in range(0, len(order), window)]
        order = [i for part in windows for i in sorted(part, key=lambda i: -lengths[i])]
    batches = [order[s : s + batch_size] for s in range(0, len(order), batch_size)]
    if group_by_length:
        rng.shuffle(batches)
    return batches


# --- model --------------------------------------------------------------------------------------------


def tokenizer_texts(examples: Sequence[Example], rule_hints: bool = False) -> list[str]:
    """What a scratch tokenizer learns from: every prompt and every target the model will see."""
    texts = []
    for e in examples:
        hint, rule_answers = hints_for(TASKS[e.task], e.text, rule_hints, e.known)
        texts.append(TASKS[e.task].prompt(e.text, hint) + "".join(target_pieces(TASKS[e.task], e.text, e.answer, rule_answers)))
    return texts


def build_model(config: TrainConfig, examples: Sequence[Example], out: Path):
    """(tokenizer, model): a new OPT with a BPE tokenizer trained on `examples`, or a pretrained base (LoRA or full)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if config.base == "scratch":
        from training.scratch import new_opt_model
        from training.tokenizer import train_tokenizer

        if config.lora is not None:
            raise ValueError("lora applies to a pretrained base; a scratch model is trained in full")
        if (out / "tokenizer.json").is_file() and config.resume:
            tokenizer = AutoTokenizer.from_pretrained(out)
        else:
            tokenizer = train_tokenizer(tokenizer_texts(examples, config.rule_hints), config.vocab_size)
        # Positions past max_length would never be trained; the engine cuts inputs to the positions there are.
        model = new_opt_model(tokenizer, config.size, seed=config.seed, max_position_embeddings=config.max_length)
        return tokenizer, model
    # "embedded" is the shipped model, as in model.path; a local base is named by its absolute path,
    # so the adapter still finds it from anywhere.
    folder = model_folder(config.base)
    base = str(folder.resolve()) if folder is not None else config.base
    if folder is not None and reads_hints(folder) != config.rule_hints:
        raise ValueError(f"{config.base} was trained {'with' if reads_hints(folder) else 'without'} rule hints: "
                         f"set rule_hints: {str(reads_hints(folder)).lower()} in the recipe to fine-tune it")
    if folder is not None and reads_hints(folder, "neighbours") != bool(config.data.neighbours):
        raise ValueError(f"{config.base} was trained {'with' if reads_hints(folder, 'neighbours') else 'without'} "
                         "neighbours: set data.neighbours (0 for none) in the recipe to fine-tune it")
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    if config.lora is not None:
        from peft import LoraConfig, get_peft_model

        lora = config.lora
        model = get_peft_model(
            model,
            LoraConfig(
                r=lora.rank,
                lora_alpha=lora.alpha,
                lora_dropout=lora.dropout,
                target_modules=list(lora.target_modules),
                task_type="CAUSAL_LM",
            ),
        )
    return tokenizer, model


def export_model(model, tokenizer, folder: Path, save_dtype: str, rule_hints: bool = False,
                 neighbours: bool = False) -> None:
    """A folder load_engine loads: the adapter (LoRA) or the full model in `save_dtype`, the tokenizer,
    and prompt.json (whether the model reads rule hints and labeled neighbours).

    Full models keep config dtype float32, so loaders upcast half-precision weights unless told otherwise.
    """
    folder.mkdir(parents=True, exist_ok=True)
    if hasattr(model, "peft_config"):
        model.save_pretrained(folder, safe_serialization=True)
    else:
        dtype, state, seen = getattr(torch, save_dtype), {}, set()
        for name, tensor in model.state_dict().items():
            if tensor.data_ptr() not in seen:  # tied weights (lm_head = embed_tokens) are stored once
                seen.add(tensor.data_ptr())
                state[name] = tensor.detach().to(dtype)
        model.save_pretrained(folder, state_dict=state, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    write_prompt_file(folder, rule_hints, neighbours)


# --- checkpoints and curves ---------------------------------------------------------------------------------


def trainable_state(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def save_checkpoint(path: Path, state: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".tmp")
    torch.save(state, partial)
    os.replace(partial, path)  # a run killed while saving keeps the previous checkpoint


def save_curves(rows: Sequence[Mapping[str, Any]], out: Path) -> None:
    """loss.csv (one row per optimizer step and per dev evaluation) and loss.png."""
    with open(out / "loss.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["step", "epoch", "split", "loss", "lr"])
        writer.writeheader()
        writer.writerows(rows)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for split, style in (("train", "-"), ("dev", "o-")):
        points = [(r["step"], r["loss"]) for r in rows if r["split"] == split]
        if split == "train" and len(points) > 20:  # a running mean shows the trend through batch-to-batch noise
            window = max(1, len(points) // 50)
            losses = [loss for _, loss in points]
            points = [(points[i][0], sum(losses[i - window + 1 : i + 1]) / window) for i in range(window - 1, len(points))]
        if points:
            ax.plot(*zip(*points), style, label=f"{split} loss")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss per response token")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "loss.png", dpi=100)
    plt.close(fig)


# --- the run ------------------------------------------------------------------------------------------------


def pick_precision(name: str, device: torch.device, half: torch.dtype) -> torch.dtype | None:
    """Autocast dtype, None for plain fp32 (the CPU default: CPU autocast rarely pays for small models).
    "auto" on a GPU takes the engine's half precision, so a model trains in the dtype it will serve in."""
    if name == "auto":
        return half if device.type == "cuda" else None
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[name]


def lr_factor(step: int, config: TrainConfig, total_steps: int) -> float:
    """Linear warmup, then cosine or linear decay to min_lr_ratio (or constant)."""
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    if config.schedule == "constant":
        return 1.0
    progress = min(1.0, (step - config.warmup_steps) / max(1, total_steps - config.warmup_steps))
    decay = 0.5 * (1 + math.cos(math.pi * progress)) if config.schedule == "cosine" else 1 - progress
    return config.min_lr_ratio + (1 - config.min_lr_ratio) * decay


@torch.no_grad()
def mean_loss(model, rows, batch_size: int, pad_id: int, device, autocast_dtype) -> float:
    """Loss per response token over `rows`."""
    model.eval()
    total, count = 0.0, 0
    for s in range(0, len(rows), batch_size):
        batch = {k: v.to(device) for k, v in collate(rows[s : s + batch_size], pad_id).items()}
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            loss = model(**batch, use_cache=False).loss
        n = int((batch["labels"][:, 1:] != IGNORE).sum())
        total, count = total + float(loss) * n, count + n
    model.train()
    return total / max(1, count)


def token_counts(examples: Sequence[Example], rows) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = {}
    for example, (ids, labels) in zip(examples, rows):
        c = counts.setdefault(example.task, {"examples": 0, "tokens": 0, "response_tokens": 0})
        c["examples"] += 1
        c["tokens"] += len(ids)
        c["response_tokens"] += sum(label != IGNORE for label in labels)
    return counts


def encode_all(tokenizer, examples: Sequence[Example], max_length: int, what: str, rule_hints: bool = False):
    """Token ids of every example that fits; the ones whose target alone is too long are reported and left out."""
    examples = tqdm(examples, desc=f"tokenizing {what}", leave=False, disable=None)
    pairs = [(e, encode_example(tokenizer, e, max_length, rule_hints)) for e in examples]
    dropped = sum(rows is None for _, rows in pairs)
    if dropped:
        tqdm.write(f"{what}: {dropped} examples left out, their target alone exceeds max_length={max_length}", file=sys.stderr)
    kept = [(e, rows) for e, rows in pairs if rows is not None]
    return [e for e, _ in kept], [rows for _, rows in kept]


def train(config: TrainConfig | Mapping[str, Any]) -> Path:
    """Run a recipe; returns the output folder (the final model, loss.csv/png, recipe.yaml, summary.json)."""
    if not isinstance(config, TrainConfig):
        config = TrainConfig.model_validate(config)
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    checkpoint_path = Path(config.checkpoint_dir or out / "checkpoint") / "state.pt"
    random.seed(config.seed)
    torch.manual_seed(config.seed)
    if config.threads:
        torch.set_num_threads(config.threads)
    device, half = pick_device(config.device)
    autocast_dtype = pick_precision(config.precision, device, half)

    train_examples = recipe_examples(config.data, "train")
    dev_examples = recipe_examples(config.data, "dev") if config.dev_loss else []
    tokenizer, model = build_model(config, train_examples, out)
    if config.max_length > getattr(model.config, "max_position_embeddings", config.max_length):
        positions = model.config.max_position_embeddings
        raise ValueError(f"max_length {config.max_length} exceeds the model's {positions} positions")
    train_examples, train_rows = encode_all(tokenizer, train_examples, config.max_length, "train", config.rule_hints)
    dev_examples, dev_rows = encode_all(tokenizer, dev_examples, config.max_length, "dev", config.rule_hints)
    if not train_rows:
        raise ValueError("the recipe selects no training examples")
    model.to(device).train()

    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:  # norms and biases are not weight-decayed
            (decay if p.dim() >= 2 else no_decay).append(p)
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.lr,
        betas=config.betas,
        fused=device.type == "cuda",
    )
    lengths = [len(ids) for ids, _ in train_rows]
    batches_per_epoch = math.ceil(len(train_rows) / config.batch_size)
    steps_per_epoch = math.ceil(batches_per_epoch / config.grad_accum)
    total_steps = steps_per_epoch * config.epochs  # the schedule's length; max_steps only stops early
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, config, total_steps))
    scaler = torch.amp.GradScaler(device.type, enabled=autocast_dtype == torch.float16)

    step, start_epoch, start_batch, curves = 0, 0, 0, []
    if config.resume and checkpoint_path.is_file():
        state = torch.load(checkpoint_path, map_location="cpu", weights_only=False)  # RNG states must stay on the CPU
        missing = set(trainable_state(model)) - set(state["model"])
        if missing:
            raise ValueError(f"{checkpoint_path} does not match this recipe's model ({len(missing)} tensors missing)")
        model.load_state_dict(state["model"], strict=False)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng"])
        if state.get("cuda_rng") and device.type == "cuda":
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        step, start_epoch, start_batch, curves = state["step"], state["epoch"], state["batch"], state["curves"]
    elif config.base == "scratch":
        tokenizer.save_pretrained(out)  # a resumed run reads the same tokenizer back
    (out / "recipe.yaml").write_text(yaml.safe_dump(config.model_dump(), sort_keys=False))

    def checkpoint(epoch: int, batch: int) -> None:
        state = dict(model=trainable_state(model), optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
                     scaler=scaler.state_dict(), step=step, epoch=epoch, batch=batch, curves=curves,
                     rng=torch.get_rng_state(), cuda_rng=torch.cuda.get_rng_state_all() if device.type == "cuda" else None)
        save_checkpoint(checkpoint_path, state)

    stop_at = min(total_steps, config.max_steps or total_steps)
    progress = tqdm(total=stop_at, initial=step, desc="training", unit="step", dynamic_ncols=True, disable=None)
    tokens_seen, started, cpu_started = 0, time.perf_counter(), time.process_time()
    for epoch in range(start_epoch, config.epochs):
        batches = epoch_batches(lengths, config.batch_size, config.seed * 1000 + epoch, config.group_by_length)
        first = start_batch if epoch == start_epoch else 0
        for b in range(first, len(batches), config.grad_accum):
            if step >= stop_at:  # max_steps reached inside this epoch
                break
            group = batches[b : b + config.grad_accum]
            step_loss = 0.0
            for indices in group:
                rows = [train_rows[i] for i in indices]
                batch = {k: v.to(device) for k, v in collate(rows, tokenizer.pad_token_id).items()}
                with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
                    loss = model(**batch, use_cache=False).loss / len(group)
                scaler.scale(loss).backward()
                step_loss += float(loss.detach())
                tokens_seen += int(batch["attention_mask"].sum())
            if config.grad_clip:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            lr = scheduler.get_last_lr()[0]
            scheduler.step()
            step += 1
            curves.append(dict(step=step, epoch=epoch + 1, split="train", loss=round(step_loss, 5), lr=lr))
            progress.update(1)
            if step % config.log_every == 0 or step == stop_at:
                rate = tokens_seen / (time.perf_counter() - started)
                progress.set_postfix(epoch=epoch + 1, loss=f"{step_loss:.3f}", lr=f"{lr:.2e}", tok_s=f"{rate:.0f}")
            if config.save_every and step % config.save_every == 0:
                checkpoint(epoch, b + len(group))
        else:  # the epoch ran to its end
            if dev_rows:
                dev = mean_loss(model, dev_rows, config.batch_size, tokenizer.pad_token_id, device, autocast_dtype)
                curves.append(dict(step=step, epoch=epoch + 1, split="dev", loss=round(dev, 5), lr=""))
                tqdm.write(f"epoch {epoch + 1}: dev loss {dev:.4f}", file=sys.stderr)
            checkpoint(epoch + 1, 0)
            if epoch + 1 in config.export_epochs:
                export_model(model, tokenizer, out / f"epoch-{epoch + 1}", config.save_dtype, config.rule_hints,
                             bool(config.data.neighbours))
            save_curves(curves, out)
            continue
        checkpoint(epoch, b)  # stopped by max_steps inside the epoch: resume continues from this batch
        break
    progress.close()

    model.eval()
    export_model(model, tokenizer, out, config.save_dtype, config.rule_hints, bool(config.data.neighbours))
    save_curves(curves, out)
    elapsed = time.perf_counter() - started
    summary = dict(
        steps=step,
        train=token_counts(train_examples, train_rows),
        dev=token_counts(dev_examples, dev_rows),
        trainable_parameters=sum(p.numel() for p in model.parameters() if p.requires_grad),
        tokens_this_run=tokens_seen,
        seconds_this_run=round(elapsed, 1),
        tokens_per_second=round(tokens_seen / max(elapsed, 1e-9), 1),
        cpu_seconds_this_run=round(time.process_time() - cpu_started, 1),  # on a shared machine wall time understates
        device=str(device),
    )
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return out


def main(argv: Sequence[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        raise SystemExit(0 if argv else 2)
    try:
        out = train(load_config(argv[0], argv[1:]))
    except (ValueError, OSError, ModelUnavailable) as exc:  # a bad recipe, a missing data file or base model
        raise SystemExit(f"error: {exc}") from None
    print(f"model saved to {out}")


if __name__ == "__main__":
    main()
