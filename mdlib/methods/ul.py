"""UL and UL-F: knowledge unlearning by gradient ascent on the likelihood of D_f's text.

Jang et al., "Knowledge Unlearning for Mitigating Privacy Risks in Language Models" (ACL 2023;
code joeljang/knowledge-unlearning): maximise the language-modelling loss (minimise the
likelihood) of the target token sequences, with no retained data, and stop once the targets are
no more familiar to the model than data it never saw: after each epoch, stop when the targets'
memorisation accuracy (MA) and extraction likelihood (EL) fall below the model's MA and EL on
unseen text (`ma_threshold`, `el_threshold`). Their recipe (`run.py`, `configs/example.json`,
`models/Neo_Model.py`): Adam at lr 5e-5, betas (0.9, 0.98), no weight decay, no gradient clipping,
no dropout, and one gradient update per epoch on the whole target set (the effective batch size
must equal the number of targets: "minimizing gradient updates is crucial for retaining LM
performance"), for at most 20 epochs.

UL ("ul") is that method on the text side of our model: gradient ascent on the masked-LM loss
of D_f's captions, `task.mlm_loss` (the MLM head was trained with the original model), updating
only the text encoder f_T and the MLM head (the only parameters the loss reaches). It stops when
the MLM loss of D_f (masks drawn from a fixed seed) reaches the MLM loss of validation texts under f.

UL-F ("ul-f"): a fusion-only method cannot change the text-only likelihood at all (the MLM head
reads f_T, which "-F" freezes), so UL-F ascends the likelihood the fusion module does control:
the head's log-likelihood of each D_f pair's ground truth given its image, log P(y | I, T) (for
retrieval the ITM "matched" probability, i.e. how likely the text is as a description of its
image). It stops when D_f's mean P(true) falls to the level of the validation pairs under f.
Unlike NegGrad-F, UL-F ascends only the D_f pairs' own likelihood (no negatives, no ITC), as UL
ascends only the targets' likelihood.

Defaults follow their recipe: lr 5e-5, weight_decay 0, no clipping, one full-batch step over D_f per
epoch (`full_batch`), at most 20 epochs, the stopping rule checked after every epoch.

What differs from the source and why: the stopping statistic is the MLM loss (UL) or the mean
P(true) (UL-F) against its level on validation data, not MA and EL, which are defined for
left-to-right generation; the loss is masked, not causal, LM (our text encoder is bidirectional);
AdamW with weight decay 0 is Adam with betas (0.9, 0.999), not (0.9, 0.98) (the shared loop's
optimiser); dropout stays as the model has it; the shared loop's checkpoint selection (`select`)
applies where they keep the last model (select="last"). Both also carry NegGrad's divergence guard
(None turns a bound off), which their code does not have.
"""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..data.examples import ExampleSet
from ..models import MultimodalModel
from ..tasks.base import Task
from .base import Method, MethodConfig, optimise, register
from .neggrad import DivergenceGuard, reference_row, validate_guard


@dataclass
class ULConfig(MethodConfig):
    """Jang et al.'s recipe: lr 5e-5, no weight decay, no gradient clipping, at most `epochs` = 20 epochs of
    one step each over all of D_f (`full_batch`; False = steps of `forget_batch` as the shared loop),
    the stopping rule checked every step. mask_prob: MLM masking rate (UL). stop_at_unseen: their
    stopping rule (needs validation data). max_retain_drop, max_val_drop, max_forget_loss: the
    divergence guard."""

    epochs: int = 20
    lr: float = 5e-5
    weight_decay: float = 0.0
    grad_clip: float = 0.0
    min_steps: int = 0
    eval_every: int = 1
    full_batch: bool = True
    mask_prob: float = 0.15
    stop_at_unseen: bool = True
    max_retain_drop: float | None = 0.2
    max_val_drop: float | None = 20.0
    max_forget_loss: float | None = 50.0

    def validate(self) -> None:
        super().validate()
        if not 0 < self.mask_prob < 1:
            raise ValueError(f"mask_prob must lie in (0, 1), got {self.mask_prob}")
        validate_guard(self)


@torch.no_grad()
def mean_mlm_loss(model: MultimodalModel, task: Task, examples: ExampleSet, seed: int, mask_prob: float,
                  batch_size: int = 256) -> float:
    """Mean masked-LM loss of `examples`' texts, with masks drawn from `seed` (comparable across calls)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    g = torch.Generator().manual_seed(seed)
    total, n = 0.0, 0
    for batch in examples.batches(batch_size, device=device):
        losses = task.mlm_loss(model, batch, g, mask_prob=mask_prob, reduction="none")
        total, n = total + losses.sum().item(), n + len(losses)
    model.train(was_training)
    return total / max(n, 1)


@register
class UL(Method):
    """UL ("ul": text encoder + MLM head) and UL-F ("ul-f": fusion module and head, on log P(y | I, T))."""

    name = "ul"
    Config = ULConfig
    needs_frozen = False
    uses_retain = False

    def trainable_parameters(self, model: MultimodalModel) -> list[torch.nn.Parameter]:
        if self.fusion_only:
            return list(model.fusion_parameters())
        return list(model.text_encoder.parameters()) + list(model.mlm_head.parameters())

    def run(self, new, original, task, forget, retain, val, *, seed, progress):
        cfg = self.config
        val_sample = None if val is None else val.with_units(val.units()[:100], "val sample")
        use_rule = cfg.stop_at_unseen and val_sample is not None
        notes = ["no validation data: UL's stopping rule (D_f as unfamiliar as unseen data) is off"] \
            if cfg.stop_at_unseen and val_sample is None else []
        stop = None

        if self.fusion_only:
            def ascent_loss(model, frozen, task, fb, rb, generator):
                with torch.no_grad():
                    enc = task.encode(model, fb)  # the encoders are frozen in "-F"
                nll = F.cross_entropy(task.logits(model, task.fused(model, enc)), task.labels(fb))
                return -nll, {"forget": nll.item()}

            if use_rule:
                unseen_p = float(task.true_probability(new, val_sample).mean())

                def stop_p(row):
                    if row["p_forget"] <= unseen_p:
                        return f"D_f's mean P(true) {row['p_forget']:.3f} reached the unseen level {unseen_p:.3f}"
                stop = stop_p
        else:
            def ascent_loss(model, frozen, task, fb, rb, generator):
                mlm = task.mlm_loss(model, fb, generator, mask_prob=cfg.mask_prob)
                return -mlm, {"forget": mlm.item()}

            if use_rule:
                unseen_mlm = mean_mlm_loss(new, task, val_sample, seed, cfg.mask_prob)

                def stop_mlm(row):
                    row["forget_mlm"] = mean_mlm_loss(new, task, forget, seed, cfg.mask_prob)
                    if row["forget_mlm"] >= unseen_mlm:
                        return f"D_f's MLM loss {row['forget_mlm']:.3f} reached the unseen level {unseen_mlm:.3f}"
                stop = stop_mlm

        guard = DivergenceGuard(reference_row(new, task, forget, retain, val, seed), cfg.max_retain_drop,
                                cfg.max_val_drop, cfg.max_forget_loss, extra=stop)
        method = self
        if cfg.full_batch:  # one update per epoch on all of D_f, as their effective batch size
            method = copy.copy(self)
            method.config = dataclasses.replace(cfg, forget_batch=len(forget))
        result = optimise(method, new, None, task, forget, retain, val, seed=seed, progress=progress,
                          loss_fn=ascent_loss, ascent_guard=guard)
        if guard.reason:
            result.notes.append(f"UL {guard.reason}")
        result.notes.extend(notes)
        return result
