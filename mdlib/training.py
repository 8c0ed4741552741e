"""Training the original model (and Retrain): one loop for every task, with staging for ITM."""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field

import torch

from .data.examples import ExampleSet
from .models import MultimodalModel
from .precision import MasterWeights, attention_kernels, check_precision, resolve_precision
from .tasks.base import Task
from .utils import progress_bar


@dataclass(frozen=True)
class TrainConfig:
    """How the original model is trained.

    Retrieval is staged, because an ITM head shown hard negatives from the first step stalls at
    chance (it cannot yet tell them apart, and "no match" is the cheapest answer): for the first
    `hard_from` fraction of the epochs ITM negatives are random or minimal pairs; afterwards a
    negative is ITC-hard with probability `p_hard`. The fusion and head learn at `fusion_lr_mult` x
    `lr`. `kind_weights` weigh the kinds of minimal-pair negatives (a photographer swap is rarer: it can only be learnt by memorising).

    `itm_pos_weight` weighs matched pairs in the ITM loss. Every matched pair seen in training is
    familiar, while a test pair is not (its photographer is new to the model), so an unweighted
    head puts many true test pairs just below 0.5; weighting them 4x moves the decision
    boundary by about 1.4 log-odds units, without changing how the head ranks pairs.

    Speed: `precision` ("auto", "fp32", "bf16"; see `mdlib.precision`). `bucket_by_length` draws
    batches of texts of similar length (`ExampleSet.length_buckets`: a quarter less text work) and is
    off by default: in the scene world a caption's length tells how many objects it names, so length
    buckets take the cross-length negatives out of every contrastive batch. Measured, full-mode
    retrieval, seed 0, bfloat16, 80 epochs: mean recall 82.3 with buckets against 85.8 without (ITM
    accuracy 63.6 vs 67.8); the float32 recipe of the previous release gave 87.4 and 69.8 on the
    same machine (89.5 and 70.1 in an earlier run of that same recipe).

    `repeat_templates` ({template name: n}, statement tasks with `one_per_unit=False`) shows every training
    statement of the named templates n times per epoch instead of once; {"photographer": 8} makes the
    entailment model memorise its images' photographers (README, "Something to forget on every task").
    Empty by default, and then left out of `to_dict`, so that checkpoints saved before it keep their names.
    """

    epochs: int = 80
    batch_size: int = 64
    lr: float = 6e-4
    fusion_lr_mult: float = 2.0
    weight_decay: float = 0.02
    warmup_steps: int = 100
    p_minimal: float = 0.5
    p_hard: float = 0.5
    hard_from: float = 0.3
    kind_weights: dict = field(default_factory=lambda: {"colour": 1, "shape": 1, "size": 1, "place": 1, "binding": 1, "tag": 0.3})
    itm_pos_weight: float = 4.0
    mlm_weight: float = 0.2
    one_per_unit: bool = True
    eval_every: int = 20
    grad_clip: float = 5.0
    precision: str = "auto"
    bucket_by_length: bool = False
    repeat_templates: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_precision(self.precision)
        if not isinstance(self.bucket_by_length, bool):
            raise ValueError(f"TrainConfig.bucket_by_length must be True or False, got {self.bucket_by_length!r}")
        for name in ("epochs", "batch_size", "eval_every"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"TrainConfig.{name} must be a positive int, got {v!r}")
        for name in ("lr", "weight_decay", "fusion_lr_mult", "grad_clip", "mlm_weight", "itm_pos_weight"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0 or (name == "lr" and v == 0):
                raise ValueError(f"TrainConfig.{name} must be a {'positive' if name == 'lr' else 'non-negative'} number, got {v!r}")
        for name in ("p_minimal", "p_hard", "hard_from"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not 0 <= v <= 1:
                raise ValueError(f"TrainConfig.{name} must lie in [0, 1], got {v!r}")
        repeats = self.repeat_templates
        if not isinstance(repeats, dict) or not all(
                isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) and v >= 1
                for k, v in repeats.items()):
            raise ValueError(f"TrainConfig.repeat_templates must map template names to positive ints, got {repeats!r}")
        if repeats and self.one_per_unit:
            raise ValueError("TrainConfig.repeat_templates needs one_per_unit=False: it repeats statements in an "
                             "epoch that shows every statement, not one per unit")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        if not d["repeat_templates"]:
            del d["repeat_templates"]
        return d


def epoch_pool(task: Task, data: ExampleSet, repeat_templates: dict) -> torch.Tensor:
    """Indices (P,) that an epoch over every example shuffles: each example of `data` once, then the examples
    of each template named in `repeat_templates` (n - 1) more times (none named: arange(N), so the epoch is a
    plain permutation). Raises ValueError for a template the task lacks."""
    known = tuple(getattr(task, "templates", ()))
    unknown = sorted(set(repeat_templates) - set(known))
    if unknown:
        raise ValueError(f"TrainConfig.repeat_templates names {unknown}, not templates of the {task.name} task "
                         f"(its templates: {list(known) or 'none'})")
    pool = [torch.arange(len(data))]
    for name, times in repeat_templates.items():
        chosen = torch.nonzero(data.fields["template"] == known.index(name))[:, 0]
        pool += [chosen] * (times - 1)
    return torch.cat(pool)


def make_optimizer(model: MultimodalModel, lr: float, weight_decay: float, fusion_lr_mult: float = 1.0,
                   fusion_only: bool = False, masters: MasterWeights | None = None) -> torch.optim.Optimizer:
    """AdamW over the encoders (lr) and the fusion + head (lr x fusion_lr_mult); biases and norms without decay.

    With `masters` the optimiser updates their float32 copies of the parameters (bfloat16 training)."""
    groups = []
    parts = [(model.fusion_parameters(), lr * fusion_lr_mult)]
    if not fusion_only:
        parts.insert(0, (model.encoder_parameters(), lr))
    for params, group_lr in parts:
        params = [p for p in params if p.requires_grad]
        decay = [p for p in params if p.dim() >= 2]
        no_decay = [p for p in params if p.dim() < 2]
        groups += [{"params": decay, "lr": group_lr, "weight_decay": weight_decay},
                   {"params": no_decay, "lr": group_lr, "weight_decay": 0.0}]
    if masters is not None:
        groups = masters.param_groups(groups)
    return adamw(groups, lr=lr)


def adamw(params, **kwargs) -> torch.optim.Optimizer:
    """AdamW with the fused kernel (one pass over all parameters per step instead of one per tensor)."""
    try:
        return torch.optim.AdamW(params, fused=True, **kwargs)
    except (RuntimeError, TypeError):  # a device or dtype without the fused kernel
        return torch.optim.AdamW(params, **kwargs)


def warmup_cosine(optimizer: torch.optim.Optimizer, warmup: int, total: int) -> torch.optim.lr_scheduler.LambdaLR:
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def train(model: MultimodalModel, task: Task, data: ExampleSet, config: TrainConfig, seed: int = 0,
          val: ExampleSet | None = None, progress: bool = True) -> list[dict]:
    """Train `model` on `data` with the task's objective; returns one dict of logs per epoch.

    Every `eval_every` epochs (and after the last) the task metric on `val` is logged.
    """
    if len(data) == 0:
        raise ValueError("cannot train on an empty example set")
    device = next(model.parameters()).device
    pool = None if config.one_per_unit else epoch_pool(task, data, config.repeat_templates)
    g = torch.Generator().manual_seed(seed)
    steps_per_epoch = math.ceil((len(data.units()) if pool is None else len(pool)) / config.batch_size)
    total = config.epochs * steps_per_epoch
    dtype = resolve_precision(config.precision, device)
    masters = MasterWeights(model, [p for p in model.parameters() if p.requires_grad], dtype)
    opt = make_optimizer(model, config.lr, config.weight_decay, config.fusion_lr_mult, masters=masters)
    sched = warmup_cosine(opt, min(config.warmup_steps, total // 5), total)
    history: list[dict] = []
    bar = progress_bar(total=total, desc="training", disable=not progress, leave=False)
    start = time.perf_counter()
    try:
        with attention_kernels(dtype, device):
            for epoch in range(config.epochs):
                model.train()
                hard = epoch >= config.hard_from * config.epochs
                # the pool is shuffled twice: one shuffle would do, but dropping a draw from `g` would change
                # every trained model (and the numbers the README reports) for no gain
                idx = data.one_per_unit(g) if pool is None else pool[torch.randperm(len(pool), generator=g)]
                idx = idx[torch.randperm(len(idx), generator=g)]
                batches = data.length_buckets(idx, config.batch_size, g) if config.bucket_by_length else \
                    idx.split(config.batch_size)
                sums: dict[str, float] = {}
                n = 0
                for batch_idx in batches:
                    batch = data.batch(batch_idx, device)
                    if len(batch["unit"]) < 2:
                        continue
                    loss, logs = task.training_loss(model, batch, generator=g,
                                                    p_hard=config.p_hard if hard else 0.0,
                                                    p_minimal=config.p_minimal, kind_weights=config.kind_weights,
                                                    mlm_weight=config.mlm_weight, itm_pos_weight=config.itm_pos_weight)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    masters.step(opt, config.grad_clip)
                    sched.step()
                    for k, v in logs.items():
                        sums[k] = sums.get(k, 0.0) + v
                    n += 1
                    bar.update(1)
                    bar.set_postfix(epoch=epoch + 1, loss=f"{logs['loss']:.3f}", refresh=False)
                row = {"epoch": epoch + 1, "seconds": time.perf_counter() - start,
                       **{k: v / max(n, 1) for k, v in sums.items()}}
                if val is not None and ((epoch + 1) % config.eval_every == 0 or epoch + 1 == config.epochs):
                    row |= {f"val_{k}": v for k, v in task.evaluate(model, val).items()}
                history.append(row)
    finally:
        masters.restore()
    bar.close()
    model.eval()
    return history
