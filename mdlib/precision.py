"""Numeric precision of training and unlearning: float32, or bfloat16 with float32 master weights.

`precision="bf16"` keeps the model's weights *and* activations in bfloat16 for the whole step
(no per-operation casts, which cost more than they save at our model sizes), while the optimiser
updates a float32 copy of the weights ("master weights") that is rounded into the model after each
step: small updates that bfloat16 weights would round away still accumulate. Losses are computed
in float32 from bfloat16 logits. When the run ends, the model gets its float32 weights back, so
checkpoints, evaluation and every later method see a float32 model.

`"auto"` picks bfloat16 where the hardware has fast bfloat16 matrix units (CUDA GPUs that support
it; CPUs with AVX512-BF16 or AMX) and float32 elsewhere. Measured on a 2-core AVX512-BF16 CPU: a
1024 x 1024 matmul at about 400 GFLOP/s in bfloat16 against 150 in float32, and a (2240 x 128) x (128 x 128)
one, our models' typical shape, at about 350 against 160; a whole training step is about 1.5x faster
(benchmarks/speed.py), since much of a step at hidden size 128 is not matrix products.
"""
from __future__ import annotations

import contextlib
from typing import Iterable

import torch
from torch import nn

PRECISIONS = ("auto", "fp32", "bf16")


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision


def fast_bf16(device: torch.device) -> bool:
    """True where bfloat16 matrix products are faster than float32 ones on `device`."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        cpu = getattr(torch, "cpu", None)
        return any(bool(getattr(cpu, name, lambda: False)()) for name in
                   ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))
    return False


def resolve_precision(precision: str, device: torch.device | str) -> torch.dtype:
    """The compute dtype for `precision` ("auto", "fp32", "bf16") on `device`."""
    check_precision(precision)
    device = torch.device(device)
    if precision == "fp32" or (precision == "auto" and not fast_bf16(device)):
        return torch.float32
    return torch.bfloat16


def model_dtype(model: nn.Module) -> torch.dtype:
    """The floating dtype of a model's weights."""
    return next(p for p in model.parameters() if p.is_floating_point()).dtype


def attention_kernels(dtype: torch.dtype, device: torch.device):
    """A context for attention in `dtype`: on the CPU, bfloat16 attention is fastest as plain matrix
    products (PyTorch's "math" kernel; its flash kernel is 2-10x slower there at our sizes)."""
    if dtype == torch.bfloat16 and device.type == "cpu":
        from torch.nn.attention import SDPBackend, sdpa_kernel

        return sdpa_kernel([SDPBackend.MATH])
    return contextlib.nullcontext()


class MasterWeights:
    """Run `model` in `dtype` while an optimiser updates float32 master copies of `trainable`.

        mp = MasterWeights(model, trainable, torch.bfloat16)
        opt = torch.optim.AdamW(mp.masters(trainable), ...)   # the optimiser sees float32 tensors
        loss.backward(); mp.step(opt, grad_clip)              # grads -> masters, step, round back
        mp.restore()                                          # the model is float32 again

    With dtype float32 it is a thin pass-through (the masters are the parameters themselves).
    Non-trainable parameters keep their exact float32 values after `restore`.
    """

    def __init__(self, model: nn.Module, trainable: Iterable[nn.Parameter], dtype: torch.dtype):
        self.model, self.dtype = model, dtype
        self.trainable = list(trainable)
        self.active = dtype != torch.float32
        if not self.active:
            self._master = {id(p): p for p in self.trainable}
            return
        # exact float32 values of every parameter and buffer, to restore the frozen ones unchanged
        self._saved = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self._master = {id(p): p.detach().float().clone().requires_grad_(True) for p in self.trainable}
        model.to(dtype)

    def masters(self, params: Iterable[nn.Parameter]) -> list[torch.Tensor]:
        """The float32 tensors the optimiser should update, in the order of `params`."""
        return [self._master[id(p)] for p in params]

    def param_groups(self, groups: list[dict]) -> list[dict]:
        """Optimiser parameter groups with every parameter replaced by its master."""
        return [{**g, "params": self.masters(g["params"])} for g in groups]

    def step(self, optimizer: torch.optim.Optimizer, grad_clip: float = 0.0) -> None:
        """Move the model's gradients to the masters, clip, step and round the masters into the model."""
        if self.active:
            for p in self.trainable:
                m = self._master[id(p)]
                m.grad = None if p.grad is None else p.grad.float()
                p.grad = None
        masters = [self._master[id(p)] for p in self.trainable]
        if grad_clip:
            torch.nn.utils.clip_grad_norm_(masters, grad_clip)
        optimizer.step()
        if self.active:
            with torch.no_grad():
                for p in self.trainable:
                    p.copy_(self._master[id(p)])

    def float32_state(self) -> dict[str, torch.Tensor]:
        """The model's state dict in float32 (masters for the trainable parameters), as copies."""
        state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        if self.active:
            names = {id(p): n for n, p in self.model.named_parameters()}
            state = {k: self._saved[k].clone() if k in self._saved else v for k, v in state.items()}
            for p in self.trainable:
                state[names[id(p)]] = self._master[id(p)].detach().clone()
        return state

    def restore(self) -> None:
        """Give the model its float32 weights back (masters for the trainable ones)."""
        if self.active:
            state = self.float32_state()
            self.model.to(torch.float32)
            self.model.load_state_dict(state)
            self.active = False
