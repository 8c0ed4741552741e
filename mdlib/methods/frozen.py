"""The frozen original model f: its outputs without gradients, cached by example id.

MultiDelete compares f' with f on the same examples again and again (every epoch sees
D_f once more). f never changes, so its unimodal states of D_f are computed once and then read
from a cache. D_r batches are fresh examples nearly every step, so their outputs are computed
each time (once per step: MultiDelete shares them between L_MKR and the head term).
"""
from __future__ import annotations

import copy

import torch

from ..data.examples import Batch
from ..models import MultimodalModel
from ..tasks.base import Encoded, Task


class _SlotCache:
    """Rows of a tensor per example id, filled on first use."""

    def __init__(self) -> None:
        self.store: dict[int, torch.Tensor] = {}

    def get(self, ids: torch.Tensor, compute) -> torch.Tensor:
        keys = ids.tolist()
        missing = [i for i, k in enumerate(keys) if k not in self.store]
        if missing:
            values = compute(torch.as_tensor(missing, device=ids.device))
            for i, v in zip(missing, values):
                self.store[keys[i]] = v
        return torch.stack([self.store[k] for k in keys])

    def __len__(self) -> int:
        return len(self.store)


class FrozenModel:
    """Wraps a frozen copy of f. `cache=False` recomputes everything each call (for benchmarks).
    `dtype`: the copy's weights and outputs (bfloat16 when the method runs in bfloat16)."""

    def __init__(self, model: MultimodalModel, task: Task, cache: bool = True, dtype: torch.dtype = torch.float32):
        self.model = copy.deepcopy(model).to(dtype).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.task = task
        self.cache = cache
        self._image, self._text = _SlotCache(), _SlotCache()

    @torch.no_grad()
    def encoded(self, batch: Batch, cache: bool = True) -> Encoded:
        """f_I and f_T states of the batch (image: (B, n, N, H), text: (B, L, H)).

        Cached by example id when `cache` (use it for D_f, which every epoch revisits; D_r's
        states are many and rarely revisited, so they are recomputed)."""
        if not (self.cache and cache) or self.task.variable_image_tokens:
            return self.task.encode(self.model, batch)
        state: dict = {}

        def compute_all(rows):
            if "enc" not in state:
                state["enc"] = self.task.encode(self.model, batch)
            return state["enc"]

        ids = batch["example_id"]
        image = self._image.get(ids, lambda rows: compute_all(rows).image[rows])
        width = batch["input_ids"].shape[1]
        text = self._text.get(ids, lambda rows: _pad(compute_all(rows).text[rows], self.task_width))
        return Encoded(image, None if "enc" not in state else state["enc"].image_mask, text[:, :width],
                       batch["attention_mask"])

    @property
    def task_width(self) -> int:
        return self.model.config.max_text_len

    @torch.no_grad()
    def fused(self, batch: Batch, enc: Encoded | None = None) -> torch.Tensor:
        """f(I, T) fused representation of the batch's own pairs, (B, D), from `enc` if given.

        Not cached: it is read for D_r batches, whose examples a run rarely draws twice."""
        return self.task.fused(self.model, enc or self.encoded(batch, cache=False))

    @torch.no_grad()
    def fused_unrelated(self, enc: Encoded, text_perm: torch.Tensor) -> torch.Tensor:
        """f(I_p, T_q) for the unrelated pairs (i, text_perm[i]), (B, D): one no-grad fusion pass."""
        return self.task.fused(self.model, enc, text_perm)

    @torch.no_grad()
    def logits(self, fused: torch.Tensor) -> torch.Tensor:
        return self.task.logits(self.model, fused)


def _pad(text: torch.Tensor, width: int) -> torch.Tensor:
    """(B, L, H) -> (B, width, H), zero-padded (cached text states share one width)."""
    return torch.nn.functional.pad(text, (0, 0, 0, width - text.shape[1]))
