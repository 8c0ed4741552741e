"""ERM-KTP: entanglement-reduced masks after the visual features, then knowledge transfer and prohibition.

Lin, Zhang, Chen, Chen & Susilo, "ERM-KTP: Knowledge-Level Machine Unlearning via Knowledge
Transfer" (CVPR 2023), whose released code we follow. Vision side only, as in the MultiDelete
paper (ERM-KTP-F and the graph-text column are N/A there).

The original is class-based. Its ERM is a learnable mask M (channels x classes) after the last
feature map: during training, a sample of class y sees its features multiplied by M[:, y], and a
regulariser (L1 beyond 10% density + 0.1 x the overlap of the class masks) pushes the classes onto
disjoint channels. To unlearn a class, KTP zeroes the channels that class uses (in the teacher's
features and in the classifier's input weights) and trains a *fresh* feature extractor on the
retained data to reproduce the teacher's masked feature maps (MSE): knowledge of the retained
data is transferred, knowledge carried by the forgotten class's channels is prohibited.

Adaptation to image-text pairs, where there are no classes: the two "classes" are the groups to
forget and to keep. (1) ERM: with f frozen, learn two channel gates on the image encoder's output
states, g_f for D_f pairs and g_r for D_r pairs, by minimising the pairs' task loss
(`task.example_loss`) plus the ERM regulariser, clipped as in their code (each channel's gates
divided by their maximum, clamped to [0, 1]). Our original model was not trained with the masks,
so they are fitted after the fact (the paper trains them with the model). (2) The D_f channels
are those with g_f > g_r, the most D_f-specific first, at most `mask_fraction` of them. (3) KTP:
a fresh image encoder (seeded, f's config) is trained with the shared loop on D_r images only, to
match f's image states with the D_f channels zeroed; afterwards the input weights of every consumer
of the image states (the fusion's cross-attention keys and values, the contrastive projection)
are zeroed for those channels, like their zeroed classifier columns. The text encoder, fusion
and heads are f's otherwise.

The masks are folded into weights, so the unlearned model keeps `MultimodalModel`'s architecture
and saves and loads with the ordinary checkpoints. `result.history` starts at the re-initialised
student, not at f.

Their code (RUIYUN-ML/ERM-KTP) and the constants kept from it: `ERM_laryer.py`,
`LearnableMaskLayer`: gates initialised at 0.5, `loss_function` = relu(L1 - 0.1 x size) + 0.1 x the
upper-triangular overlap of the class masks, `clip_lmask` after every step; `train_ERM.py`:
regulariser weight `lambda_reg` = 1e-3 (our `entanglement_weight`); `KTP.py`: a fresh model whose
classifier is the original's with the forgotten channels zeroed (`load_fc`), trained with MSE to the
teacher's feature maps on the remaining data, the classifier frozen.

What differs from their code and why (ours is an adaptation; the constants that have a counterpart
are theirs):

* the gates are fitted after the fact (`mask_steps` = 30 Adam steps at `mask_lr` = 0.05, f frozen),
  where theirs are trained with the model (SGD, lr 0.1, momentum 0.9, weight decay 5e-4, on one epoch
  in three): our original model was trained without them;
* the prohibited channels: theirs are all channels whose gate for a forgotten class is positive
  (`channel_express`; after joint training the classes' masks are nearly disjoint); gates fitted
  after the fact stay positive almost everywhere, so that rule would prohibit nearly every channel:
  ours are the channels with g_f > g_r, at most `mask_fraction` = 10% of them;
* KTP distils one target, the image encoder's output states with the D_f channels zeroed; theirs
  (`KTP.py`, `model/resnet_20.py`) sums the MSE to the teacher's last feature map as it is (taken
  before the mask) and the MSE to its pooled features with the forgotten channels zeroed. Ours uses
  AdamW at lr 1e-3 on a ViT (theirs: SGD at lr 0.1 with momentum 0.9, weight decay 5e-4 and decays at
  epochs 10 and 20, for a ResNet), and its budget is `epochs` = 30 passes over D_f's batches, each
  distilling one batch of 64 D_r examples (about 3 passes over D_r in fast mode), where theirs runs
  up to 200 epochs of the remaining data: the comparison caps every method at a fraction of
  Retrain's cost;
* `clip_lmask` divides by the maximum and then clamps to [0, 1]; we clamp first (the same for
  non-negative gates, and no sign flip when a channel's gates are all negative).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..data.examples import ExampleSet
from ..models import MultimodalModel
from ..tasks.base import Task
from .base import Method, MethodConfig, UnlearnResult, optimise, register
from .retrain import fresh_model


@dataclass
class ErmKtpConfig(MethodConfig):
    """ERM: mask_steps Adam steps at mask_lr on the gates (forget_batch D_f + retain_batch D_r pairs
    each), regulariser weight entanglement_weight (their lambda_reg), at most mask_fraction of the
    channels prohibited. KTP: the shared loop's epochs/lr/weight_decay on the student encoder (each
    step distils one D_r batch; the student starts from scratch, hence the large lr and epochs).
    select must be "last" (checkpoint selection against the random student is meaningless), so the
    monitor only logs, every `eval_every` steps.
    """

    epochs: int = 30
    lr: float = 1e-3
    retain_batch: int = 64
    eval_every: int = 50
    select: str = "last"
    mask_steps: int = 30
    mask_lr: float = 0.05
    entanglement_weight: float = 1e-3
    mask_fraction: float = 0.1

    def validate(self) -> None:
        super().validate()
        if self.select != "last":
            raise ValueError("ERM-KTP retrains the vision encoder from scratch: select must be 'last', "
                             f"got {self.select!r}")
        if self.mask_steps < 1:
            raise ValueError(f"mask_steps must be at least 1, got {self.mask_steps}")
        if not self.mask_lr > 0 or not math.isfinite(self.mask_lr):
            raise ValueError(f"mask_lr must be a positive number, got {self.mask_lr}")
        if self.entanglement_weight < 0:
            raise ValueError(f"entanglement_weight must be non-negative, got {self.entanglement_weight}")
        if not 0 < self.mask_fraction <= 1:
            raise ValueError(f"mask_fraction must lie in (0, 1], got {self.mask_fraction}")


def erm_regulariser(gates: torch.Tensor) -> torch.Tensor:
    """ERM's mask loss for gates (groups, H): L1 beyond 10% density + 0.1 x the pairwise overlaps."""
    l1 = F.relu(gates.abs().sum() - 0.1 * gates.numel())
    overlap = torch.triu(gates @ gates.t(), diagonal=1).sum()
    return l1 + 0.1 * overlap


def learn_gates(model: MultimodalModel, task: Task, forget: ExampleSet, retain: ExampleSet, cfg: ErmKtpConfig,
                generator: torch.Generator) -> torch.Tensor:
    """ERM after the fact: gates (2, H) on the image states for D_f (row 0) and D_r (row 1); f stays fixed."""
    device = next(model.parameters()).device
    gates = torch.full((2, model.image_encoder.hidden_size), 0.5, device=device, requires_grad=True)
    current: dict[str, torch.Tensor] = {}
    hook = model.image_encoder.register_forward_hook(lambda module, inputs, out: (out[0] * current["gate"], *out[1:]))
    flags = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    opt = torch.optim.Adam([gates], lr=cfg.mask_lr)
    try:
        for _ in range(cfg.mask_steps):
            loss = erm_regulariser(gates) * cfg.entanglement_weight
            for k, (data, size) in enumerate(((forget, cfg.forget_batch), (retain, cfg.retain_batch))):
                current["gate"] = gates[k]
                batch = data.batch(torch.randperm(len(data), generator=generator)[:size], device)
                loss = loss + task.example_loss(model, batch).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():  # their clip_lmask: each channel's gates over its maximum, in [0, 1]
                gates.clamp_(0, 1)
                gates /= gates.max(0, keepdim=True).values.clamp(min=1e-8)
    finally:
        hook.remove()
        for p, flag in zip(model.parameters(), flags):
            p.requires_grad_(flag)
    return gates.detach()


def forget_channels(gates: torch.Tensor, fraction: float) -> torch.Tensor:
    """Channels whose D_f gate exceeds their D_r gate, most D_f-specific first, at most `fraction` of them."""
    diff = gates[0] - gates[1]
    k = min(int(fraction * len(diff)), int((diff > 0).sum()))
    return diff.topk(k).indices.sort().values if k > 0 else torch.zeros(0, dtype=torch.long, device=diff.device)


def image_consumers(model: MultimodalModel) -> list[tuple[str, nn.Linear]]:
    """The linear layers that read the image encoder's states directly."""
    if isinstance(model.image_to_fusion, nn.Linear):
        return [("image_to_fusion", model.image_to_fusion), ("image_proj", model.image_proj)]
    layers = [(n, m) for n, m in model.fusion.named_modules()
              if isinstance(m, nn.Linear) and "crossattention.self." in n and n.endswith((".key", ".value"))]
    if not layers:
        raise RuntimeError("ERM-KTP found no cross-attention key/value layers in the fusion module")
    return [(f"fusion.{n}", m) for n, m in layers] + [("image_proj", model.image_proj)]


@register
class ErmKtp(Method):
    """ERM-KTP ("erm-ktp"); the image encoder is retrained by distillation on D_r, nothing else learns."""

    name = "erm-ktp"
    Config = ErmKtpConfig
    has_fusion_variant = False
    needs_frozen = False

    def trainable_parameters(self, model: MultimodalModel) -> list[nn.Parameter]:
        return list(model.image_encoder.parameters())

    def run(self, new, original, task, forget, retain, val, *, seed, progress) -> UnlearnResult:
        if new.config.modality != "image":
            raise ValueError("ERM-KTP masks visual feature maps and is defined for image encoders only "
                             "(the paper reports N/A on graph-text)")
        cfg = self.config
        gates = learn_gates(new, task, forget, retain, cfg, torch.Generator().manual_seed(seed))
        channels = forget_channels(gates, cfg.mask_fraction)
        keep = torch.ones_like(gates[0])
        keep[channels] = 0.0
        new.image_encoder.load_state_dict(fresh_model(original, seed).image_encoder.state_dict())
        with torch.no_grad():  # prohibition: nothing downstream reads the D_f channels
            for _, layer in image_consumers(new):
                layer.weight[:, channels] = 0.0
        teacher = original

        def transfer_loss(model, frozen, task, forget_batch, retain_batch, generator):
            images = retain_batch["image"]
            images = images.flatten(0, 1) if images.dim() == 5 else images  # pairs of images (NLVR): all of them
            with torch.no_grad():
                target = teacher.encode_image(images)[0] * keep
            loss = F.mse_loss(model.encode_image(images)[0].float(), target.float())
            return loss, {"transfer": loss.item()}

        was_training = original.training
        original.eval()
        try:
            result = optimise(self, new, None, task, forget, retain, val, seed=seed, progress=progress,
                              loss_fn=transfer_loss)
        finally:
            original.train(was_training)
        result.notes.append(f"prohibited {len(channels)} of {len(keep)} image channels {channels.tolist()} "
                            f"(D_f gate mean {gates[0].mean():.2f}, D_r gate mean {gates[1].mean():.2f}); "
                            f"image encoder retrained from scratch on D_r images")
        result.best = {**result.best, "prohibited_channels": len(channels)}
        return result
