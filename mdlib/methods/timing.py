"""Timing one optimisation step of a method, with the frozen model's outputs cached or recomputed."""
from __future__ import annotations

import statistics
import time

import torch

from ..data.examples import ExampleSet
from ..models import MultimodalModel
from ..precision import MasterWeights, attention_kernels
from ..tasks.base import Task
from ..training import adamw
from .base import get_method
from .frozen import FrozenModel


def step_time(method_name: str, model: MultimodalModel, task: Task, forget: ExampleSet, retain: ExampleSet,
              *, cache: bool = True, steps: int = 20, warmup: int = 2, seed: int = 0, **hparams) -> float:
    """Median wall time (s) of one step (loss, backward, AdamW) of `method_name` on `model`'s device,
    in the method's precision (`precision` setting, as `unlearn` runs it).

    D_f batches cycle through four fixed batches, as epochs revisit D_f; D_r batches are fresh each
    step. With `cache=False` the frozen model recomputes every output, as the authors' code does.
    """
    method = get_method(method_name, task, **hparams)
    device = next(model.parameters()).device
    dtype = method.compute_dtype(model)
    frozen = FrozenModel(model, task, cache=cache, dtype=dtype)
    f_prime = MultimodalModel(model.config).to(device)
    f_prime.load_state_dict(model.state_dict())
    params = method.freeze_all_but_trainable(f_prime)
    masters = MasterWeights(f_prime, params, dtype)
    opt = adamw(masters.masters(params), lr=method.config.lr)
    g = torch.Generator().manual_seed(seed)
    cfg = method.config
    f_batches = [torch.randperm(len(forget), generator=g)[:cfg.forget_batch] for _ in range(4)]
    times = []
    with attention_kernels(dtype, device):
        for i in range(steps + warmup):
            fb = forget.batch(f_batches[i % len(f_batches)], device)
            rb = retain.batch(torch.randperm(len(retain), generator=g)[:cfg.retain_batch], device)
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            loss, _ = method.loss(f_prime, frozen, task, fb, rb, g)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            masters.step(opt, cfg.grad_clip)
            if device.type == "cuda":
                torch.cuda.synchronize()
            if i >= warmup:
                times.append(time.perf_counter() - start)
    return statistics.median(times)
