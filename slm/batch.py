"""The batch being decoded: sequences that grow together, and their key-value cache.

transformers' DynamicCache grows by concatenation, copying the whole cache at every step; with a
long prompt and 33 copies of it (slm/consensus.py) that copy was a quarter of the time an
impression took. Here each layer keeps its keys and values in buffers with room to grow, and a step
writes its tokens in place.
"""

from __future__ import annotations

import functools
import inspect
from typing import Sequence

import torch
from transformers.cache_utils import Cache, DynamicLayer


@functools.cache
def cache_argument(model_class: type) -> str:
    """The KV cache's name in the model's forward: `cache` in newer transformers, where the older
    `past_key_values` still works but warns at every call (and is to go), else `past_key_values`."""
    return "cache" if "cache" in inspect.signature(model_class.forward).parameters else "past_key_values"


class GrowingLayer(DynamicLayer):
    """One layer's cache, [batch, heads, tokens, head dim], held in buffers with room for half as many
    tokens again as they last had to grow to (an impression's 128 after a 256-token prompt); `keys`
    and `values` are views of the filled part."""

    def __init__(self, buffers: tuple[torch.Tensor, torch.Tensor] | None = None, length: int = 0):
        super().__init__()
        self.buffers, self.length = buffers, length
        if buffers is not None:
            self._show()

    @classmethod
    def holding(cls, keys: torch.Tensor, values: torch.Tensor) -> GrowingLayer:
        """A layer holding a copy of `keys` and `values` (which may be expanded views)."""
        layer = cls()
        layer.update(keys, values)
        return layer

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        end = self.length + key_states.shape[-2]
        if self.buffers is None or end > self.buffers[0].shape[-2]:
            self.buffers = tuple(self._room(i, new, end) for i, new in enumerate((key_states, value_states)))
        for buffer, new in zip(self.buffers, (key_states, value_states)):
            buffer[:, :, self.length:end] = new
        self.length = end
        self._show()
        return self.keys, self.values

    def rows(self, keep: torch.Tensor) -> GrowingLayer:
        return GrowingLayer(tuple(buffer[keep] for buffer in self.buffers), self.length)

    def repeated(self, times: int) -> GrowingLayer:
        return GrowingLayer(tuple(buffer.repeat_interleave(times, 0) for buffer in self.buffers), self.length)

    def fork(self) -> GrowingLayer:
        """The same rows over the same buffers: what the fork writes lands past this layer's length,
        unseen by it, and is overwritten when this layer grows."""
        return GrowingLayer(self.buffers, self.length)

    def _room(self, index: int, new: torch.Tensor, end: int) -> torch.Tensor:
        """A buffer with room for `end` tokens and half as many again, holding what buffer `index` holds."""
        buffer = new.new_empty((*new.shape[:2], end + end // 2 + 1, new.shape[-1]))
        if self.buffers is not None:
            buffer[:, :, :self.length] = self.buffers[index][:, :, :self.length]
        return buffer

    def _show(self) -> None:
        self.keys, self.values = (buffer[:, :, :self.length] for buffer in self.buffers)
        self.is_initialized = True


class Batch:
    """Key-value cache and attention mask of a batch of sequences that grow together.

    Rows may receive different numbers of tokens in one step; the shorter ones are padded with
    masked tokens, and position ids count real tokens only, so every row reads as if unpadded.
    """

    def __init__(self, model, layers: list[GrowingLayer], mask: torch.Tensor, pad_id: int):
        self.model, self.layers, self.mask, self.pad_id = model, layers, mask, pad_id

    def extend(self, rows: Sequence[Sequence[int]], pad_left: bool = True, all_logits: bool = False) -> torch.Tensor:
        """Feed one step of tokens per row; log-probs after the last token ([B, V]), or after every one ([B, T, V])."""
        width = max(len(row) for row in rows)
        device = self.mask.device
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        new_mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            span = slice(width - len(row), width) if pad_left else slice(0, len(row))
            ids[i, span] = torch.tensor(row, dtype=torch.long)
            new_mask[i, span] = 1
        ids, new_mask = ids.to(device), new_mask.to(device)
        positions = (self.mask.sum(1, keepdim=True) + new_mask.cumsum(1) - 1).clamp(min=0)
        self.mask = torch.cat([self.mask, new_mask], dim=1)
        cache = Cache(layers=self.layers) if self.layers else Cache(layer_class_to_replicate=GrowingLayer)
        out = self.model(
            input_ids=ids,
            attention_mask=self.mask,
            position_ids=positions,
            **{cache_argument(type(self.model)): cache},
            use_cache=True,
            logits_to_keep=0 if all_logits else 1,
        )
        self.layers = cache.layers
        logprobs = out.logits.float().log_softmax(-1)
        return logprobs if all_logits else logprobs[:, -1]

    def rows(self, keep: torch.Tensor) -> Batch:
        """A batch of the rows `keep` (indices) only: rows that are done stop costing compute."""
        keep = keep.to(self.mask.device)
        return Batch(self.model, [layer.rows(keep) for layer in self.layers], self.mask[keep], self.pad_id)

    def repeated(self, times: int) -> Batch:
        """Each row `times` times in a row, for a look ahead: this batch reads as before once the
        look ahead is done, and extending this batch again ends the look ahead (one copy shares
        this batch's buffers)."""
        layers = [layer.fork() if times == 1 else layer.repeated(times) for layer in self.layers]
        return Batch(self.model, layers, self.mask.repeat_interleave(times, 0), self.pad_id)

    def head(self, tokens: int, rows: int) -> Batch:
        """A new batch of `rows` rows, each holding this batch's first row's first `tokens` tokens."""
        layers = [GrowingLayer.holding(layer.keys[:1, :, :tokens].expand(rows, -1, -1, -1),
                                       layer.values[:1, :, :tokens].expand(rows, -1, -1, -1))
                  for layer in self.layers] if tokens else []
        return Batch(self.model, layers, torch.ones((rows, tokens), dtype=torch.long, device=self.mask.device),
                     self.pad_id)
