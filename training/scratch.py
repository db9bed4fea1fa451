"""OPT-architecture models made from a config, for the embedded default and for tests.

Same architecture as facebook/opt-350m, so one inference and training path serves both.
"""

from __future__ import annotations

from transformers import OPTConfig, OPTForCausalLM

# Sizes by name; "tiny" is for tests, "embedded" is what ships inside the package.
SIZES = {
    "tiny": dict(hidden_size=32, num_hidden_layers=2, ffn_dim=64, num_attention_heads=2, max_position_embeddings=512),
    "small": dict(hidden_size=128, num_hidden_layers=3, ffn_dim=512, num_attention_heads=4, max_position_embeddings=1024),
    "embedded": dict(hidden_size=256, num_hidden_layers=4, ffn_dim=1024, num_attention_heads=4, max_position_embeddings=1024),
}


def new_opt_model(tokenizer, size: str = "tiny", seed: int = 0, **overrides) -> OPTForCausalLM:
    import torch

    torch.manual_seed(seed)
    dims = {**SIZES[size], **overrides}
    config = OPTConfig(
        vocab_size=len(tokenizer),
        word_embed_proj_dim=dims["hidden_size"],
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        dropout=0.1,
        **dims,
    )
    return OPTForCausalLM(config)
