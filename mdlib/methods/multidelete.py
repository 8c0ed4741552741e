"""MultiDelete and MultiDelete-F: modality decoupling + multimodal and unimodal knowledge retention."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..data.examples import Batch
from ..losses import (get_distance, modality_decoupling_loss, multidelete_loss, multimodal_retention_loss,
                      similarity_decoupling_loss, unimodal_retention_loss)
from ..models import MultimodalModel
from ..tasks.base import Task, derangement
from .base import Method, MethodConfig, register
from .frozen import FrozenModel

READOUTS = ("cls", "similarity", "both")


# The paper's objective and optimiser settings (alpha = beta = gamma = 1, AdamW lr 1e-5..2e-5, weight decay
# 0.02..0.05, no head term), for runs that reproduce it exactly: unlearn("multidelete", ..., **PAPER_SETTINGS).
PAPER_SETTINGS = dict(alpha=1.0, beta=1.0, gamma=1.0, head_retention=0.0, lr=2e-5, weight_decay=0.02)


@dataclass
class MultiDeleteConfig(MethodConfig):
    """alpha, beta, gamma weigh L_MD, L_MKR, L_UKR (the paper: 1, 1, 1).

    The defaults are ours, chosen on the embedded retrieval task in full mode so that forgetting is
    selective (D_f score down, the retained data's probabilities in place): beta = 5, a head-retention
    term of 0.3, AdamW at 5e-5 (2e-4 for the fusion-only variant, which moves fewer parameters)
    without weight decay, 4 epochs over D_f, D_r batches twice the D_f batch. `PAPER_SETTINGS` holds the
    paper's.

    md_readout: what L_MD compares. "cls" = fused [CLS] (every task); "similarity" = the in-batch
    image-text similarity matrices (retrieval, as in the authors' code); "both" = their sum.
    head_retention: weight of an extra retention term at the head (ours, not the paper's; 0 = off):
    MSE between f' and f on the head's logits of D_r pairs and of mismatched D_r pairs, which keeps
    the retained data's probabilities in place while D_f is forgotten (L_MKR holds the fused vectors,
    but small moves of them can still change the head's decisions; notebook 03 shows it).
    """

    epochs: int = 4
    lr: float = 5e-5
    weight_decay: float = 0.0
    retain_batch: int = 64
    alpha: float = 1.0
    beta: float = 5.0
    gamma: float = 1.0
    distance: str = "mse"
    md_readout: str = "cls"
    head_retention: float = 0.3

    def validate(self) -> None:
        super().validate()
        for name in ("alpha", "beta", "gamma", "head_retention"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be non-negative, got {getattr(self, name)}")
        get_distance(self.distance)
        if self.md_readout not in READOUTS:
            raise ValueError(f"md_readout must be one of {READOUTS}, got {self.md_readout!r}")


@register
class MultiDelete(Method):
    """MultiDelete (all parameters of f') and, as "multidelete-f", MultiDelete-F (fusion and head only;
    L_UKR then vanishes by construction because the encoders cannot move)."""

    name = "multidelete"
    Config = MultiDeleteConfig
    variant_defaults = {"fusion": {"lr": 2e-4}}

    def __init__(self, fusion_only: bool = False, **hparams):
        super().__init__(fusion_only, **hparams)
        if fusion_only and self.config.md_readout == "similarity":
            raise ValueError("multidelete-f cannot use md_readout='similarity': the similarity matrices come from "
                             "the encoders, which a fusion-only method keeps frozen; use 'cls'")

    def losses(self, model: MultimodalModel, frozen: FrozenModel, task: Task, fb: Batch, rb: Batch,
               generator: torch.Generator) -> dict[str, torch.Tensor]:
        """The three losses (and the optional head-retention term) on one D_f batch and one D_r batch."""
        cfg = self.config
        dis = get_distance(cfg.distance)
        old_f = frozen.encoded(fb)
        new_f = old_f if self.fusion_only else task.encode(model, fb)
        perm = derangement(fb["unit"].cpu(), generator, strict=False).to(fb["unit"].device)
        out: dict[str, torch.Tensor] = {}
        # L_MD: D_f pairs under f' should look like unrelated pairs under f.
        md = torch.zeros((), device=fb["unit"].device)
        if cfg.md_readout in ("cls", "both"):
            md = md + modality_decoupling_loss(task.fused(model, new_f), frozen.fused_unrelated(old_f, perm), dis)
        if cfg.md_readout in ("similarity", "both") and not self.fusion_only:
            sim_new = task.similarity(model, new_f)
            with torch.no_grad():
                sim_old = task.similarity(frozen.model, old_f, perm)
            md = md + similarity_decoupling_loss(sim_new, sim_old, dis)
        out["md"] = md
        # L_MKR: D_r pairs keep their fused representation. f's unimodal states of D_r are computed once
        # (for -F they are f''s own: its encoders are f's) and serve L_MKR and the head term.
        if self.fusion_only:
            with torch.no_grad():
                new_r = task.encode(model, rb)
            old_r = new_r
        else:
            new_r = task.encode(model, rb)
            old_r = frozen.encoded(rb, cache=False)
        fused_r = task.fused(model, new_r)
        old_fused_r = frozen.fused(rb, enc=old_r)
        out["mkr"] = multimodal_retention_loss(fused_r, old_fused_r, dis)
        # L_UKR: D_f's unimodal embeddings stay where they were (constant for -F).
        out["ukr"] = torch.zeros_like(md) if self.fusion_only else unimodal_retention_loss(
            task.unimodal(new_f), task.unimodal(old_f), dis)
        if cfg.head_retention > 0:
            perm_r = derangement(rb["unit"].cpu(), generator, strict=False).to(rb["unit"].device)
            new_logits = torch.cat([task.logits(model, fused_r), task.logits(model, task.fused(model, new_r, perm_r))])
            old_logits = torch.cat([frozen.logits(old_fused_r), frozen.logits(frozen.fused_unrelated(old_r, perm_r))])
            out["head"] = dis(new_logits, old_logits)
        return out

    def loss(self, model, frozen, task, fb, rb, generator):
        cfg = self.config
        parts = self.losses(model, frozen, task, fb, rb, generator)
        total = multidelete_loss(parts["md"], parts["mkr"], parts["ukr"], cfg.alpha, cfg.beta, cfg.gamma)
        if "head" in parts:
            total = total + cfg.head_retention * parts["head"]
        return total, {"total": total.item(), **{k: v.item() for k, v in parts.items()}}
