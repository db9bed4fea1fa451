"""The trainer on tiny models: response-only loss, truncation, LoRA end to end, resume, fp16 export, presets."""

import csv
import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from slm.tasks import LABEL_KEYS, SERIES_LABELS, TASKS, encode_prompt, encode_target, target_pieces
from training.data import Example
from training.recipe import RECIPES, TrainConfig, load_config
from training.train import IGNORE, collate, encode_example, train
from tests.support.tiny_model import REPORTS

PRESETS = sorted(Path(str(RECIPES)).glob("*.yaml"))
NEGATIVE = {key: "No" for key in LABEL_KEYS}


@pytest.fixture(scope="module")
def base(tiny_model_folder):
    return tiny_model_folder


@pytest.fixture(scope="module")
def tokenizer(base):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(base)


def tiny(tmp_path, *overrides) -> TrainConfig:
    return load_config("tiny", [f"output_dir={tmp_path}", *overrides])


def loss_rows(folder):
    with open(folder / "loss.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_prompt_tokens_are_masked_and_the_target_is_what_tasks_encode(tokenizer):
    example = Example("label", REPORTS[1], NEGATIVE)
    ids, labels = encode_example(tokenizer, example, max_length=1024)
    prompt = encode_prompt(tokenizer, TASKS["label"], example.text)
    target = encode_target(tokenizer, target_pieces(TASKS["label"], example.text, example.answer))
    assert ids == prompt + target
    assert labels == [IGNORE] * len(prompt) + target


def test_loss_counts_response_tokens_only(base, tokenizer):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base).eval()
    rows = [encode_example(tokenizer, Example("harmonize", text, "T2"), 1024) for text in ("AX T2 FSE", "T2")]
    batch = collate(rows, tokenizer.pad_token_id)
    with torch.no_grad():
        loss = model(**batch).loss
        logprobs = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.log_softmax(-1)
    # By hand: the mean of -log p(token) over the target tokens of both rows, nothing else.
    terms = [
        -logprobs[r, t - 1, ids[t]]
        for r, (ids, labels) in enumerate(rows)
        for t in range(len(ids))
        if labels[t] != IGNORE
    ]
    targets = [encode_target(tokenizer, target_pieces(TASKS["harmonize"], t, "T2")) for t in ("AX T2 FSE", "T2")]
    assert len(terms) == sum(map(len, targets))
    assert float(loss) == pytest.approx(float(torch.stack(terms).mean()), rel=1e-5)
    assert batch["labels"][1, len(rows[1][0]):].eq(IGNORE).all()  # padding never counts


def test_overlong_input_loses_its_start_never_the_target(tokenizer):
    long_report = "FINDINGS: " + " ".join(f"Finding number {i}." for i in range(200)) + "\nIMPRESSION: Normal."
    target = encode_target(tokenizer, target_pieces(TASKS["label"], long_report, NEGATIVE))
    empty_prompt = encode_prompt(tokenizer, TASKS["label"], "")
    max_length = len(empty_prompt) + len(target) + 40  # room for some 40 tokens of the report
    ids, labels = encode_example(tokenizer, Example("label", long_report, NEGATIVE), max_length)
    assert max_length - 3 <= len(ids) <= max_length and ids[-len(target):] == target and labels[-len(target):] == target
    prompt = tokenizer.decode(ids[: len(ids) - len(target)])
    assert prompt.endswith("IMPRESSION: Normal.\n\n### Response:\n") and "Finding number 0." not in prompt
    assert encode_example(tokenizer, Example("label", long_report, NEGATIVE), len(empty_prompt) + len(target) - 1) is None


@pytest.mark.slow  # loads and fine-tunes the shipped model
@pytest.mark.needs_data
def test_the_embedded_model_is_a_base_to_fine_tune(tmp_path):
    """`base: embedded` (the retraining recipe's) fine-tunes the shipped model in full, wherever the command runs."""
    from slm.engine import load_engine, model_folder
    from slm.hints import reads_hints

    folder = model_folder("embedded")  # asked as the shipped model was trained: hints, neighbours
    hinted = [f"rule_hints={str(reads_hints(folder)).lower()}",
              f"data.neighbours={0.5 if reads_hints(folder, 'neighbours') else 0}"]
    out = train(tiny(tmp_path / "ft", "base=embedded", "max_length=448", "max_steps=2", *hinted))
    assert reads_hints(out, "neighbours") == reads_hints(folder, "neighbours")
    tuned = load_engine(str(out), device="cpu", impression_max_tokens=4)
    shipped = load_engine("embedded", device="cpu")
    pairs = list(zip(tuned.model.parameters(), shipped.model.parameters()))
    assert len(pairs) == len(list(shipped.model.parameters()))  # the same architecture
    assert any(not torch.equal(a.float(), b.float()) for a, b in pairs)  # its weights moved
    assert tuned.tokenizer.get_vocab() == shipped.tokenizer.get_vocab()
    assert all(p.label in SERIES_LABELS for p in tuned.harmonize(["AX T2 FSE", "  dADC "]))


@pytest.mark.needs_data
def test_tiny_lora_trains_saves_and_serves_all_three_tasks(base, tmp_path):
    from slm.engine import load_engine

    out = train(tiny(tmp_path / "lora", f"base={base}", "lora.rank=4", "lora.alpha=8", "lora.dropout=0.0", "max_steps=3"))
    adapter = json.loads((out / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == str(base) and set(adapter["target_modules"]) == {"q_proj", "v_proj"}
    with safe_open(out / "adapter_model.safetensors", "pt") as f:
        lora_b = [f.get_tensor(k) for k in f.keys() if "lora_B" in k]
    assert lora_b and all(t.abs().sum() > 0 for t in lora_b)  # LoRA B starts at zero: training moved it
    assert [int(r["step"]) for r in loss_rows(out) if r["split"] == "train"] == [1, 2, 3]
    engine = load_engine(str(out), device="cpu", batch_size=4, impression_max_tokens=8)
    assert all(p.label in SERIES_LABELS for p in engine.harmonize(["AX T2 FSE", "  dADC "]))
    labels = engine.label(REPORTS[:2])
    assert all(set(row) == set(LABEL_KEYS) and set(row.values()) <= {"Yes", "No"} for row in labels)
    assert all(isinstance(text, str) for text in engine.impression(REPORTS[:2]))


@pytest.mark.slow  # three short training runs
@pytest.mark.needs_data
def test_resume_continues_where_the_checkpoint_stopped(tmp_path):
    straight = train(tiny(tmp_path / "straight"))
    stopped = train(tiny(tmp_path / "resumed", "max_steps=2"))
    assert [r["step"] for r in loss_rows(stopped) if r["split"] == "train"] == ["1", "2"]
    resumed = train(tiny(tmp_path / "resumed", "resume=true"))
    train_rows = [r for r in loss_rows(resumed) if r["split"] == "train"]
    assert [r["step"] for r in train_rows] == ["1", "2", "3", "4"]
    assert train_rows == [r for r in loss_rows(straight) if r["split"] == "train"]  # same batches, same dropout
    with safe_open(straight / "model.safetensors", "pt") as a, safe_open(resumed / "model.safetensors", "pt") as b:
        assert all(torch.equal(a.get_tensor(k), b.get_tensor(k)) for k in a.keys())


@pytest.mark.needs_data
def test_scratch_model_saves_fp16_weights_once_and_loads_in_fp32(tmp_path):
    from transformers import AutoModelForCausalLM

    from slm.engine import load_engine

    out = train(tiny(tmp_path, "save_dtype=float16", "max_steps=1", "epochs=1"))
    with safe_open(out / "model.safetensors", "pt") as f:
        keys = list(f.keys())
        assert {f.get_tensor(k).dtype for k in keys} == {torch.float16}
    assert "lm_head.weight" not in keys  # tied to the token embeddings, stored once
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.dtype == torch.float32 and model.config.max_position_embeddings == 512
    assert load_engine(str(out), device="cpu").harmonize(["AX T2 FSE"])[0].label in SERIES_LABELS
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["train"]) == {"harmonize", "label", "impression"}
    assert (out / "loss.png").stat().st_size > 0 and (out / "tokenizer.json").is_file()


@pytest.mark.slow  # two epochs, each with a dev pass
@pytest.mark.needs_data
def test_dev_loss_is_recorded_after_each_epoch(tmp_path):
    out = train(tiny(tmp_path, "max_steps=null", "data.limit_per_task=2", "batch_size=2", "grad_accum=1"))
    rows = loss_rows(out)
    assert [(r["epoch"], r["step"]) for r in rows if r["split"] == "dev"] == [("1", "3"), ("2", "6")]
    assert (out / "checkpoint" / "state.pt").is_file()


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.stem)
def test_presets_name_every_hyperparameter(preset):
    config = load_config(preset)
    assert config.model_fields_set == set(TrainConfig.model_fields)
    assert config.data.model_fields_set == set(type(config.data).model_fields)
    if config.lora is not None:
        assert config.lora.model_fields_set == set(type(config.lora).model_fields)


def test_overrides_reach_nested_keys_and_typos_are_refused():
    config = load_config("embedded", ["lora.rank=32", "data.tasks=[label]", "lr=3e-4"])
    assert (config.lora.rank, config.data.tasks, config.lr) == (32, ["label"], 3e-4)
    with pytest.raises(ValueError, match="batchsize"):
        load_config("embedded", ["batchsize=8"])
    with pytest.raises(ValueError, match="not key=value"):
        load_config("embedded", ["epochs"])
