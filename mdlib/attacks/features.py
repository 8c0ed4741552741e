"""What an attacker reads from a model, per example: the inputs of every membership attack.

All readouts go through the task interface, so they work for every task. The per-example
loss is computed in batches of exactly `batch_size` examples of the same set (the last batch
wraps around): retrieval's loss includes an in-batch contrastive term, and a smaller last
batch would otherwise give its examples fewer competitors and a smaller loss.
"""
from __future__ import annotations

import numpy as np
import torch

from ..data.examples import ExampleSet
from ..models import MultimodalModel
from ..tasks.base import Task

__all__ = ["feature_names", "attack_features", "true_logodds", "contrastive_logits", "example_losses"]


def has_contrastive_view(task: Task) -> bool:
    """True for retrieval: each example is an (image, caption) pair with a contrastive similarity."""
    return task.name == "retrieval"


def feature_names(task: Task) -> list[str]:
    """Column names of `attack_features`: true_logodds, loss (+ contrastive_logit for retrieval)."""
    return ["true_logodds", "loss"] + (["contrastive_logit"] if has_contrastive_view(task) else [])


def _batches(examples: ExampleSet, batch_size: int, device):
    """(batch, n_real) over `examples` in order, every batch of exactly min(batch_size, N) examples."""
    n = len(examples)
    size = min(batch_size, n)
    for start in range(0, n, size):
        idx = torch.arange(start, start + size) % n
        yield examples.batch(idx, device), min(size, n - start)


def true_logodds(model: MultimodalModel, task: Task, examples: ExampleSet, batch_size: int = 256) -> np.ndarray:
    """Logit-scaled confidence of the ground truth, log p_y / (1 - p_y), (N,) float64: `Task.true_logodds`.

    Computed from the head's logits as z_y - logsumexp_{j != y} z_j, so it does not round to
    +inf when p_y rounds to 1 (LiRA's statistic; for retrieval the ITM log-odds of the pair).
    """
    if len(examples) == 0:
        raise ValueError("no examples to score")
    return task.true_logodds(model, examples, batch_size)


@torch.no_grad()
def contrastive_logits(model: MultimodalModel, task: Task, examples: ExampleSet, batch_size: int = 256) -> np.ndarray:
    """Retrieval only: cos(image, caption) / temperature of each pair, (N,) float64.

    The logit itself, not a sigmoid of it: sigmoid(cos / 0.07) rounds to 1.0 in float32.
    """
    if not has_contrastive_view(task):
        raise ValueError(f"the contrastive view exists for retrieval pairs only, not for task {task.name!r}")
    model.eval()
    device = next(model.parameters()).device
    out = []
    for batch in examples.batches(batch_size, device=device):
        enc = task.encode(model, batch)
        img, txt = model.contrastive_features(enc.image[:, 0], enc.text)
        out.append((model.temperature_scale() * (img * txt).sum(-1)).double().cpu())
    return torch.cat(out).numpy()


@torch.no_grad()
def example_losses(model: MultimodalModel, task: Task, examples: ExampleSet, batch_size: int = 64) -> np.ndarray:
    """`task.example_loss` of every example, (N,), each computed in a full batch of `batch_size` (see module doc)."""
    model.eval()
    device = next(model.parameters()).device
    out = [task.example_loss(model, batch)[:n].double().cpu() for batch, n in _batches(examples, batch_size, device)]
    return torch.cat(out).numpy()


def attack_features(model: MultimodalModel, task: Task, examples: ExampleSet) -> np.ndarray:
    """Per-example attack features (N, F), columns `feature_names(task)`: the log-odds of the ground
    truth (not P(ground truth), which rounds to 1.0 in float32 for confident examples and ties them),
    the task's loss and, for retrieval, the pair's contrastive logit."""
    if len(examples) == 0:
        raise ValueError("no examples to read features from")
    cols = [true_logodds(model, task, examples), example_losses(model, task, examples)]
    if has_contrastive_view(task):
        cols.append(contrastive_logits(model, task, examples))
    return np.stack(cols, axis=1)
