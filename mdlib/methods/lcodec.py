"""L-CODEC and L-CODEC-F: a Newton step on a selected parameter subset, plus Gaussian noise.

Mehta, Pal, Singh & Ravi, "Deep Unlearning via Randomized Conditionally Independent Hessians"
(CVPR 2022), whose released code (vsingh-group/LCODEC-deep-unlearning) we follow. For each scrub
batch of D_f (`scrub/scrub_tools.py`, `inp_perturb`):

1. **Input perturbation.** Forward the batch `n_perturbations` times with perturbed inputs
   (Gaussian noise of std `image_noise` = 0.1 on the images, as their code; `replaced_tokens`
   random tokens per text, as their NLP code, `n_tokens_to_replace`) and record the mean output of
   every unit (output feature) of every linear layer, and the batch's loss.
2. **Selection (L-FOCI).** FOCI forward selection (Azadkia & Chatterjee 2021) with the CODEC
   conditional-dependence coefficient picks the units whose activations explain the loss: a
   Markov blanket of the loss among the units. Early stop when no unit adds dependence, at most
   `max_units`. A unit stands for its parameter row (weight row and bias entry).
   Alternatives: "gradient" (rows with the largest D_f gradient norm), "random" (their ablation).
3. **Newton step on the subset** (Sekhari et al. 2021, "Remember what you want to forget"):
   theta_S <- theta_S + m / (n - m) * (H_S + lambda I)^-1 g_S, with g_S the mean gradient of the scrub
   batch's loss, H_S the Hessian of the mean loss over the remaining data restricted to S, and
   lambda = `damping`, their `l2_reg` (`NewtonScrubStep` adds l2_reg I to the Hessian).
4. **Noise** on the subset, their `NoisyReturn(weights, epsilon, delta, m=1, nsamps=n, M, L, lamb)`:

       sigma = (gamma / epsilon) sqrt(2 log(1.25 / delta)),   gamma = 2 M L^2 m^2 / (lambda^3 n^2)

   with their constants: m = 1 (one removal per Newton step, whatever the scrub batch), n = the
   size of the original training set (`--orig_trainset_size`, fixed while removals proceed), the
   cross-entropy constants M = 0.25 (Hessian Lipschitz) and L = 1 (Lipschitz), epsilon = 0.1 and
   delta = 0.01 (`scrub/multi_scrub.py` defaults and every script in `scrub/scrub_scripts/`), and
   lambda = l2_reg = the weight decay the model was trained with (the scripts pass
   `--l2_reg $weight_decay`, 0.01; here `TrainConfig().weight_decay` = 0.02). At their CIFAR/MNIST
   setting (n = 50,000, lambda = 0.01) sigma = 0.0062; on the fast retrieval model (n = 2,000,
   lambda = 0.02) sigma = 0.49, about 14 times its mean |weight| (0.035), on the few hundred selected
   weights; it falls as 1 / n^2 with the full-mode training set.

What differs from their code and why: the loss is `task.example_loss` (the ground-truth loss of
each pair); H_S is the damped empirical Fisher (lambda I + bs/B sum_b g_b g_b^T over B mini-batches
of bs examples of D_r), solved exactly in its low-rank form (Woodbury), where their default
("FD") is a finite-difference Hessian from the gradients saved at the last two training epochs,
which our original model did not record; the Newton step is Sekhari et al.'s for the m examples of
the batch, m / (n - m) with n the examples still in the model, where their code steps 1 / (n - 1)
with the batch's mean gradient (one removal); FOCI runs on standardised activations;
`n_perturbations` is 64 (their scripts: 1000; 5 for VGGFace) to keep a step within seconds; only
`nn.Linear` units are candidates (their code also takes convolution filters: our ViT's patch
embedding is not scrubbed). Their driver (`multi_scrub.py`) reverts a scrub step that costs more
than `val_gap_skip` = 0.05 of validation accuracy and leaves its examples unscrubbed ("should
retrain"); here that rule is `val_gap_skip` (in points of the validation metric), off by default,
because a skipped batch would leave part of D_f in the published model. The guarantees assume a
strongly convex loss, which a transformer does not have.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..data.examples import Batch
from ..models import MultimodalModel
from ..tasks.base import Task
from ..training import TrainConfig
from ..utils import progress_bar
from .base import Method, UnlearnResult, register
from .dtd import check_after
from .neggrad import reference_row

SELECTIONS = ("foci", "gradient", "random")


# -- CODEC and FOCI ------------------------------------------------------------------------------
def _ranks(y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """R_i = #{j: y_j <= y_i} and L_i = #{j: y_j >= y_i}, (n,) each."""
    return (y[None, :] <= y[:, None]).sum(1).double(), (y[None, :] >= y[:, None]).sum(1).double()


def _nearest(d2: torch.Tensor) -> torch.Tensor:
    """Index of each point's nearest other point from squared distances (..., n, n) -> (..., n)."""
    n = d2.shape[-1]
    return (d2 + torch.diag(torch.full((n,), float("inf"), dtype=d2.dtype))).argmin(-1)


def foci(x: torch.Tensor, y: torch.Tensor, max_features: int, chunk: int = 512) -> list[int]:
    """FOCI feature ordering: columns of x (n, p) that explain y (n,), most informative first.

    Step k adds the column j maximising CODEC T(y, x_j | x_S) (Azadkia & Chatterjee 2021):

        T = sum_i (min(R_i, R_M(i)) - min(R_i, R_N(i))) / sum_i (R_i - min(R_i, R_N(i)))

    with R the ranks of y, N(i) the nearest neighbour of point i in x_S and M(i) in (x_S, x_j);
    for S empty, T = sum_i (n min(R_i, R_M(i)) - L_i^2) / sum_i L_i (n - L_i). Stops when no column
    gives T > 0 (the first column is always taken) or after `max_features`. Columns are
    standardised; constant columns are never picked.
    """
    n, p = x.shape
    x = x.double()
    std = x.std(0)
    keep = std > 1e-12 * (1 + x.abs().mean(0))
    x = torch.where(keep, (x - x.mean(0)) / std.clamp(min=1e-300), torch.zeros_like(x))
    r, ell = _ranks(y.double())
    if bool((r == r[0]).all()):
        return []  # a constant loss depends on nothing
    selected: list[int] = []
    base = torch.zeros(n, n, dtype=torch.float64)
    for _ in range(min(max_features, int(keep.sum()))):
        candidates = torch.nonzero(keep).flatten()
        if not selected:
            rn = None
        else:
            rn = torch.minimum(r, r[_nearest(base)])
        scores = []
        for block in candidates.split(chunk):
            cols = x[:, block].t()  # (c, n)
            d2 = base[None] + (cols[:, :, None] - cols[:, None, :]) ** 2
            rm = torch.minimum(r, r[_nearest(d2)])  # (c, n)
            if rn is None:
                scores.append((n * rm - ell ** 2).sum(1) / (ell * (n - ell)).sum())
            else:
                scores.append((rm - rn).sum(1) / (r - rn).sum().clamp(min=1e-12))
        scores = torch.cat(scores)
        best = int(scores.argmax())
        if selected and scores[best] <= 0:
            break
        j = int(candidates[best])
        selected.append(j)
        keep[j] = False
        base = base + (x[:, j][:, None] - x[:, j][None, :]) ** 2
    return selected


# -- the Newton step with a low-rank damped Fisher ---------------------------------------------------
def fisher_newton_direction(batch_grads: torch.Tensor, grad: torch.Tensor, damping: float,
                            batch_size: int = 1) -> torch.Tensor:
    """(damping I + batch_size/B G^T G)^-1 grad for G = batch_grads (B, d), grad (d,), by Woodbury:

        (lambda I + c G^T G)^-1 g = (g - G^T (lambda/c I_B + G G^T)^-1 G g) / lambda,   c = batch_size / B

    bs/B G^T G is the empirical Fisher from B mini-batch gradients of `batch_size` examples each
    (scaled by the batch size, so that it estimates the per-example Fisher near a minimum).
    """
    if damping <= 0:
        raise ValueError(f"damping must be positive, got {damping}")
    g = batch_grads.double()
    c = batch_size / len(g)
    small = torch.eye(len(g), dtype=g.dtype) * (damping / c) + g @ g.t()
    inner = torch.linalg.solve(small, g @ grad.double())
    return ((grad.double() - g.t() @ inner) / damping).to(grad.dtype)


def newton_noise_scale(n: int, m: int, epsilon: float, delta: float, lipschitz: float, hessian_lipschitz: float,
                       strong_convexity: float) -> float:
    """Sekhari et al. (NeurIPS 2021), the noise of their Newton-step unlearning algorithm:

        sigma = gamma / epsilon * sqrt(2 log(1.25 / delta)),   gamma = 2 M L^2 m^2 / (lambda^3 n^2)

    for m removals out of n, an L-Lipschitz, lambda-strongly convex loss with M-Lipschitz Hessian.
    """
    if not (epsilon > 0 and 0 < delta < 1 and lipschitz > 0 and hessian_lipschitz > 0 and strong_convexity > 0):
        raise ValueError("need epsilon > 0, 0 < delta < 1 and positive lipschitz, hessian_lipschitz, strong_convexity")
    if not 0 < m < n:
        raise ValueError(f"need 0 < m < n, got m={m}, n={n}")
    gamma = 2 * hessian_lipschitz * lipschitz ** 2 * m ** 2 / (strong_convexity ** 3 * n ** 2)
    return gamma / epsilon * math.sqrt(2 * math.log(1.25 / delta))


# -- parameter rows ---------------------------------------------------------------------------------
class Rows:
    """Units of linear layers as parameter rows: unit k of `layers` = weight row + bias entry.

    `layers` is a list of (name, nn.Linear); units are numbered layer by layer.
    """

    def __init__(self, layers: list[tuple[str, nn.Linear]]):
        self.layers = layers
        self.offsets = np.cumsum([0] + [m.out_features for _, m in layers])

    @property
    def n_units(self) -> int:
        return int(self.offsets[-1])

    def locate(self, unit: int) -> tuple[int, int]:
        layer = int(np.searchsorted(self.offsets, unit, side="right") - 1)
        return layer, unit - int(self.offsets[layer])

    def params(self, units: list[int]) -> list[nn.Parameter]:
        """The distinct parameters holding the rows of `units`."""
        out: dict[int, nn.Parameter] = {}
        for u in units:
            m = self.layers[self.locate(u)[0]][1]
            for p in (m.weight, m.bias):
                if p is not None:
                    out[id(p)] = p
        return list(out.values())

    def gather(self, units: list[int], grads: dict[int, torch.Tensor]) -> torch.Tensor:
        """Concatenate the rows of `units` from `grads` (id(param) -> tensor like param), (d,)."""
        parts = []
        for u in units:
            layer, row = self.locate(u)
            m = self.layers[layer][1]
            parts.append(grads[id(m.weight)][row].flatten())
            if m.bias is not None:
                parts.append(grads[id(m.bias)][row:row + 1])
        return torch.cat(parts)

    @torch.no_grad()
    def add_(self, units: list[int], delta: torch.Tensor) -> None:
        """Add the flat vector `delta` (d,) to the rows of `units` in place."""
        pos = 0
        for u in units:
            layer, row = self.locate(u)
            m = self.layers[layer][1]
            k = m.in_features
            m.weight[row] += delta[pos:pos + k].to(m.weight)
            pos += k
            if m.bias is not None:
                m.bias[row] += delta[pos].to(m.bias)
                pos += 1


def candidate_layers(model: MultimodalModel, trainable: list[nn.Parameter]) -> list[tuple[str, nn.Linear]]:
    """The linear layers whose parameters are all trainable (the fusion module and head for "-F")."""
    ids = {id(p) for p in trainable}
    return [(name, m) for name, m in model.named_modules()
            if isinstance(m, nn.Linear) and all(id(p) in ids for p in m.parameters())]


# -- the method --------------------------------------------------------------------------------------
@dataclass
class LCodecConfig:
    """scrub_batch: D_f examples removed per Newton step. n_perturbations, image_noise, replaced_tokens:
    the input perturbations behind the selection. selection: "foci" (L-CODEC), "gradient" or
    "random"; max_units caps the number of selected rows. fisher_batches x fisher_batch_size: D_r
    examples behind the Hessian. damping: lambda of the Hessian and of the noise bound, their
    l2_reg = the original's weight decay. epsilon, delta, lipschitz (L), hessian_lipschitz (M): the
    noise bound (their defaults); sigma: a fixed noise scale instead (None = the bound).
    val_gap_skip: revert a scrub step that lowers the validation metric by more than this many
    points (their driver's rule, 5 points there; None = off).
    """

    scrub_batch: int = 32
    n_perturbations: int = 64
    image_noise: float = 0.1
    replaced_tokens: int = 1
    selection: str = "foci"
    max_units: int = 32
    fisher_batches: int = 16
    fisher_batch_size: int = 8
    damping: float = TrainConfig().weight_decay
    epsilon: float = 0.1
    delta: float = 0.01
    lipschitz: float = 1.0
    hessian_lipschitz: float = 0.25
    sigma: float | None = None
    val_gap_skip: float | None = None

    def validate(self) -> None:
        for name in ("scrub_batch", "n_perturbations", "replaced_tokens", "max_units", "fisher_batches",
                     "fisher_batch_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int):
                raise TypeError(f"{name} must be an int, got {v!r}")
            least = 0 if name == "replaced_tokens" else 1
            if v < least:
                raise ValueError(f"{name} must be at least {least}, got {v}")
        if self.n_perturbations < 4:
            raise ValueError(f"n_perturbations must be at least 4 for a dependence estimate, "
                             f"got {self.n_perturbations}")
        for name in ("image_noise", "damping", "epsilon", "delta", "lipschitz", "hessian_lipschitz", "sigma"):
            v = getattr(self, name)
            if v is None and name == "sigma":
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise TypeError(f"{name} must be a finite number, got {v!r}")
            if v < 0 or (v == 0 and name not in ("image_noise", "sigma")):
                raise ValueError(f"{name} must be positive, got {v}")
        if self.delta >= 1:
            raise ValueError(f"delta must lie in (0, 1), got {self.delta}")
        v = self.val_gap_skip
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0):
            raise ValueError(f"val_gap_skip must be a positive number of points or None, got {v!r}")
        if self.selection not in SELECTIONS:
            raise ValueError(f"selection must be one of {SELECTIONS}, got {self.selection!r}")


@register
class LCodec(Method):
    """L-CODEC ("l-codec": units of every linear layer) and L-CODEC-F ("l-codec-f": fusion module and head only)."""

    name = "l-codec"
    Config = LCodecConfig
    needs_frozen = False

    def run(self, new, original, task, forget, retain, val, *, seed, progress) -> UnlearnResult:
        cfg = self.config
        g = torch.Generator().manual_seed(seed)
        device = next(new.parameters()).device
        rows = Rows(candidate_layers(new, self.trainable_parameters(new)))
        vocab = word_tokens(task)
        history = [reference_row(new, task, forget, retain, val, seed)]
        notes: list[str] = []
        n_train = len(forget) + len(retain)  # their orig_trainset_size: the noise's n, fixed
        remaining = n_train  # the examples still in the model: the Newton step's n
        val_sample = None if val is None else val.with_units(val.units()[:100], "val sample")
        accepted_val = history[0].get("val_d_test")
        if cfg.val_gap_skip is not None and accepted_val is None:
            notes.append("no validation data: the val_gap_skip rule is off")
        new.eval()
        steps = torch.randperm(len(forget), generator=g).split(cfg.scrub_batch)
        for step, idx in enumerate(progress_bar(iterable=steps, desc=self.full_name, disable=not progress, leave=False), 1):
            batch = forget.batch(idx, device)
            units = self.select(new, task, batch, rows, vocab, g)
            params = rows.params(units)
            grad = rows.gather(units, _grads(new, task, batch, params))
            batch_grads = torch.stack([
                rows.gather(units, _grads(new, task, retain.batch(
                    torch.randperm(len(retain), generator=g)[:cfg.fisher_batch_size], device), params))
                for _ in range(cfg.fisher_batches)])
            m = len(idx)
            newton = (m / (remaining - m)) * fisher_newton_direction(batch_grads, grad, cfg.damping,
                                                                     cfg.fisher_batch_size).double()
            sigma = cfg.sigma if cfg.sigma is not None else newton_noise_scale(
                n_train, 1, cfg.epsilon, cfg.delta, cfg.lipschitz, cfg.hessian_lipschitz, cfg.damping)
            saved = [p.detach().clone() for p in params]
            rows.add_(units, newton + sigma * torch.randn(newton.shape, generator=g, dtype=torch.float64))
            names = sorted({rows.layers[rows.locate(u)[0]][0] for u in units})
            note = (f"step {step}: {len(units)} rows ({grad.numel()} weights) in {len(names)} layers "
                    f"({', '.join(names[:3])}{', ...' if len(names) > 3 else ''}); Newton step norm "
                    f"{float(newton.norm()):.3g}, noise sigma {sigma:.3g}")
            if cfg.val_gap_skip is not None and accepted_val is not None:
                val_now = task.quick_evaluate(new, val_sample)
                new.eval()
                if accepted_val - val_now > cfg.val_gap_skip:
                    with torch.no_grad():
                        for p, old in zip(params, saved):
                            p.copy_(old)
                    notes.append(note + f"; reverted: the validation metric fell from {accepted_val:.1f} to "
                                 f"{val_now:.1f} (val_gap_skip={cfg.val_gap_skip}), {m} D_f examples not scrubbed")
                    continue
                accepted_val = val_now
            remaining -= m
            notes.append(note)
        best = check_after(new, task, forget, retain, val, seed, history, len(steps)) if self.log_checks else \
            {"step": len(steps)}
        return UnlearnResult(new, self.full_name, dataclasses.asdict(cfg), 0.0, history, best, notes)

    def select(self, model: MultimodalModel, task: Task, batch: Batch, rows: Rows, vocab: torch.Tensor,
               g: torch.Generator) -> list[int]:
        """Indices of the units (parameter rows) to scrub for this batch."""
        cfg = self.config
        if cfg.selection == "random":
            return torch.randperm(rows.n_units, generator=g)[:cfg.max_units].tolist()
        if cfg.selection == "foci":
            acts, losses = perturbation_responses(model, task, batch, rows, cfg.n_perturbations, cfg.image_noise,
                                                  cfg.replaced_tokens, vocab, g)
            units = foci(acts, losses, cfg.max_units)
            if units:
                return units
        # "gradient" (and the fallback when the loss did not vary): rows with the largest D_f gradient
        params = [p for _, m in rows.layers for p in m.parameters()]
        grads = _grads(model, task, batch, params)
        norms = []
        for _, m in rows.layers:
            sq = grads[id(m.weight)].pow(2).sum(1)
            if m.bias is not None:
                sq = sq + grads[id(m.bias)].pow(2)
            norms.append(sq)
        return torch.cat(norms).topk(min(cfg.max_units, rows.n_units)).indices.tolist()


def _grads(model: MultimodalModel, task: Task, batch: Batch, params: list[nn.Parameter]) -> dict[int, torch.Tensor]:
    """Gradients of the batch's mean `task.example_loss` for `params`: id(param) -> tensor (zeros if unused)."""
    with torch.enable_grad():
        loss = task.example_loss(model, batch).mean()
        grads = torch.autograd.grad(loss, params, allow_unused=True)
    return {id(p): (torch.zeros_like(p) if gr is None else gr.detach()) for p, gr in zip(params, grads)}


@torch.no_grad()
def perturbation_responses(model: MultimodalModel, task: Task, batch: Batch, rows: Rows, n: int, image_noise: float,
                           replaced_tokens: int, vocab: torch.Tensor,
                           generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean activation of every unit (n, n_units) and the batch's mean loss (n,) under n input perturbations."""
    records: dict[int, torch.Tensor] = {}

    def hook(index):
        def record(module, inputs, output):
            mean = output.detach().reshape(-1, output.shape[-1]).double().mean(0)
            records[index] = records.get(index, 0) + mean
        return record

    handles = [m.register_forward_hook(hook(i)) for i, (_, m) in enumerate(rows.layers)]
    acts, losses = [], []
    try:
        for _ in range(n):
            records.clear()
            perturbed = perturb(batch, vocab, image_noise, replaced_tokens, generator)
            losses.append(task.example_loss(model, perturbed).mean().double().cpu())
            acts.append(torch.cat([records[i].cpu() if i in records else
                                   torch.zeros(m.out_features, dtype=torch.float64)
                                   for i, (_, m) in enumerate(rows.layers)]))
    finally:
        for h in handles:
            h.remove()
    return torch.stack(acts), torch.stack(losses)


def word_tokens(task: Task) -> torch.Tensor:
    """Ids of the tokenizer's ordinary (non-special) tokens, (V,)."""
    special = set(task.tokenizer.all_special_ids)
    return torch.as_tensor([i for i in range(task.tokenizer.vocab_size) if i not in special])


def perturb(batch: Batch, vocab: torch.Tensor, image_noise: float, replaced_tokens: int,
            generator: torch.Generator) -> Batch:
    """A copy of the batch with N(0, image_noise^2) added to the images and `replaced_tokens` word tokens
    per text (never [CLS], [SEP] or padding) replaced by random ones from `vocab`."""
    out = dict(batch)
    image = batch["image"]
    if isinstance(image, torch.Tensor) and image.is_floating_point() and image_noise > 0:
        out["image"] = image + image_noise * torch.randn(image.shape, generator=generator).to(image)
    if replaced_tokens > 0:
        ids, mask = batch["input_ids"], batch["attention_mask"]
        words = (mask == 1) & torch.isin(ids, vocab.to(ids.device))
        scores = torch.rand(ids.shape, generator=generator).to(ids.device).masked_fill(~words, -1.0)
        top = scores.topk(min(replaced_tokens, ids.shape[1]), dim=1)
        chosen = torch.zeros_like(words).scatter_(1, top.indices, top.values > 0)
        random_ids = vocab[torch.randint(len(vocab), ids.shape, generator=generator)].to(ids.device)
        out["input_ids"] = torch.where(chosen, random_ids, ids)
    return out
