"""The task interface: what every method and metric needs to know about a task.

A task owns its data (train / val / test `ExampleSet`s, the tokenizer) and says how a
model reads a batch: the fused representation of (image, text) pairs, the head's logits,
the unimodal embeddings, the training objective of the original model and the test
metric. Methods (MultiDelete and the baselines) and metrics only talk to this interface,
so they run unchanged on every task.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..data.examples import Batch, ExampleSet
from ..data.forget import ForgetSplit, select_forget
from ..models import ModelConfig, MultimodalModel


@dataclass
class Encoded:
    """Unimodal states of a batch. image: (B, n_images, N, H) ; text: (B, L, H) ; text_mask: (B, L)."""

    image: torch.Tensor
    image_mask: torch.Tensor | None
    text: torch.Tensor
    text_mask: torch.Tensor


class Task:
    name: str = ""
    n_classes: int = 2
    n_images: int = 1
    unit_name: str = "image"  # what one deletion unit is
    variable_image_tokens: bool = False  # True when the non-text modality has a padding mask (graphs)
    class_names: tuple[str, ...] = ()

    def __init__(self, train: ExampleSet, val: ExampleSet, test: ExampleSet, tokenizer, model_defaults: dict):
        self.train, self.val, self.test = train, val, test
        self.tokenizer = tokenizer
        self.model_defaults = model_defaults

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(train={len(self.train)}, val={len(self.val)}, test={len(self.test)} examples; "
                f"deletion unit: {self.unit_name})")

    # -- data ---------------------------------------------------------------------
    def data_signature(self) -> str:
        """A hash of every split's texts, labels and units: part of a checkpoint's identity, so that a model
        trained on other examples (an older version of the data, say) is never loaded for this task."""
        import hashlib

        digest = hashlib.sha256()
        for examples in (self.train, self.val, self.test):
            for key in ("input_ids", "label", "unit"):
                digest.update(examples.fields[key].contiguous().numpy().tobytes())
        return digest.hexdigest()[:16]

    def split(self, name: str) -> ExampleSet:
        if name not in ("train", "val", "test"):
            raise ValueError(f"unknown split {name!r}; choose 'train', 'val' or 'test'")
        return getattr(self, name)

    def forget_split(self, size: int | float, seed: int = 0) -> tuple[ExampleSet, ExampleSet]:
        """(D_f, D_r): every example of a selected unit goes to D_f, every other training example to D_r."""
        units: ForgetSplit = select_forget(self.train.units(), size, seed)
        return self.train.with_units(units.forget, "D_f"), self.train.with_units(units.retain, "D_r")

    @classmethod
    def build_options(cls, fast: bool) -> dict:
        """Keyword arguments that `load_task` passes to `build` in fast or full mode (none by default)."""
        return {}

    def train_overrides(self, fast: bool) -> dict:
        """Changes to the default TrainConfig for this task's original model (none by default)."""
        return {}

    # Changes to unlearning methods' default settings on this task, by method name (none by default);
    # `get_method(name, task)` and `unlearn` apply them under the caller's own settings. The Table 1
    # protocol (`pipeline.protocol`) does not: there every method starts from its source's settings.
    METHOD_OVERRIDES: dict[str, dict] = {}

    def method_overrides(self, method: str) -> dict:
        return dict(self.METHOD_OVERRIDES.get(method, {}))

    # -- model --------------------------------------------------------------------
    def model_config(self, **overrides) -> ModelConfig:
        cfg = dict(self.model_defaults, n_classes=self.n_classes, n_images=self.n_images)
        unknown = set(overrides) - set(ModelConfig.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown model settings {sorted(unknown)}; valid: {sorted(ModelConfig.__dataclass_fields__)}")
        cfg.update(overrides)
        return ModelConfig(**cfg)

    def build_model(self, config: ModelConfig | None = None) -> MultimodalModel:
        return MultimodalModel(config or self.model_config())

    # -- readouts -------------------------------------------------------------------
    def encode(self, model: MultimodalModel, batch: Batch) -> Encoded:
        image = batch["image"]
        if self.n_images == 1:
            states, mask = model.encode_image(image)
            states, mask = states[:, None], None if mask is None else mask[:, None]
        else:  # (B, n, 3, S, S) -> encode all images at once
            b, n = image.shape[:2]
            states, mask = model.encode_image(image.flatten(0, 1))
            states = states.unflatten(0, (b, n))
            mask = None if mask is None else mask.unflatten(0, (b, n))
        text = model.encode_text(batch["input_ids"], batch["attention_mask"])
        return Encoded(states, mask, text, batch["attention_mask"])

    def fused(self, model: MultimodalModel, enc: Encoded, text_perm: torch.Tensor | None = None) -> torch.Tensor:
        """Fused [CLS] of each pair, (B, n_images * H). With `text_perm`, image i is paired with text text_perm[i]."""
        text, mask = (enc.text, enc.text_mask) if text_perm is None else (enc.text[text_perm], enc.text_mask[text_perm])
        outs = [model.fuse(enc.image[:, k], text, mask, None if enc.image_mask is None else enc.image_mask[:, k])
                for k in range(enc.image.shape[1])]
        return torch.cat(outs, dim=-1)

    def logits(self, model: MultimodalModel, fused: torch.Tensor) -> torch.Tensor:
        """Head logits (B, n_classes), in float32, from fused representations (B, n_images * H)."""
        return model.head(fused).float()

    @staticmethod
    def unimodal(enc: Encoded) -> torch.Tensor:
        """[f_I(I); f_T(T)] per example, flattened to (B, D): image tokens and (masked) text tokens."""
        text = enc.text * enc.text_mask[..., None]
        return torch.cat([enc.image.flatten(1), text.flatten(1)], dim=1)

    def labels(self, batch: Batch) -> torch.Tensor:
        return batch["label"]

    # -- objectives and metrics -----------------------------------------------------
    def training_loss(self, model: MultimodalModel, batch: Batch, generator: torch.Generator | None = None,
                      mlm_weight: float = 0.0, **options) -> tuple[torch.Tensor, dict[str, float]]:
        """The original model's objective on a batch: cross-entropy of the head, plus `mlm_weight` x MLM."""
        enc = self.encode(model, batch)
        ce = F.cross_entropy(self.logits(model, self.fused(model, enc)), self.labels(batch))
        loss, logs = ce, {"ce": ce.item()}
        if mlm_weight > 0:
            mlm = self.mlm_loss(model, batch, generator)
            loss = loss + mlm_weight * mlm
            logs["mlm"] = mlm.item()
        return loss, {"loss": loss.item(), **logs}

    def mlm_loss(self, model: MultimodalModel, batch: Batch, generator: torch.Generator | None = None,
                 mask_prob: float = 0.15, reduction: str = "mean") -> torch.Tensor:
        """Masked-language-modelling loss of the texts under f_T and the MLM head (text only).

        15% of the non-special tokens are replaced by [MASK] (BERT's recipe without the 80/10/10
        split); the loss is the cross-entropy of the original tokens at those positions.
        With reduction="none" returns one loss per example (B,), the mean over its masked tokens.
        """
        ids, mask = batch["input_ids"], batch["attention_mask"]
        special = (ids == self.tokenizer.cls_token_id) | (ids == self.tokenizer.sep_token_id) | (mask == 0)
        chosen = (torch.rand(ids.shape, generator=generator).to(ids.device) < mask_prob) & ~special
        # make sure every text has at least one masked token
        first_word = (~special).float().argmax(1)
        chosen[torch.arange(len(ids)), first_word] |= ~chosen.any(1)
        masked = ids.masked_fill(chosen, self.tokenizer.mask_token_id)
        states = model.encode_text(masked, mask)[chosen]  # (M, H): the head reads the masked positions only
        per_token = F.cross_entropy(model.mlm_head(states).float(), ids[chosen], reduction="none")  # (M,)
        if reduction == "none":
            rows = chosen.nonzero()[:, 0]
            per_example = torch.zeros(len(ids), device=ids.device).index_add_(0, rows, per_token)
            return per_example / chosen.sum(1).clamp(min=1)
        return per_token.sum() / chosen.sum().clamp(min=1)

    def example_loss(self, model: MultimodalModel, batch: Batch) -> torch.Tensor:
        """Per-example loss of the ground truth (B,): what NegGrad ascends and attacks read."""
        enc = self.encode(model, batch)
        return F.cross_entropy(self.logits(model, self.fused(model, enc)), self.labels(batch), reduction="none")

    @torch.no_grad()
    def true_probability(self, model: MultimodalModel, examples: ExampleSet, batch_size: int = 256) -> np.ndarray:
        """P(ground truth) for every example, (N,) float32: for mean probabilities (rank by `true_logodds`)."""
        model.eval()
        device = next(model.parameters()).device
        out = []
        for batch in examples.batches(batch_size, device=device):
            enc = self.encode(model, batch)
            probs = self.logits(model, self.fused(model, enc)).softmax(-1)
            out.append(probs.gather(1, self.labels(batch)[:, None])[:, 0].float().cpu())
        return torch.cat(out).numpy()

    @torch.no_grad()
    def true_logodds(self, model: MultimodalModel, examples: ExampleSet, batch_size: int = 256) -> np.ndarray:
        """log P(true) - log(1 - P(true)) for every example, (N,) float64: the score to rank examples by.

        Computed from the head's logits in float64 as z_y - logsumexp_{j != y} z_j, so it keeps its order
        where P(true) rounds to 1.0 in float32 (log-odds above about 17). For retrieval the head is the
        binary ITM head: the ITM log-odds of each pair. Same order as `true_probability`, without its ties.
        """
        model.eval()
        device = next(model.parameters()).device
        out = []
        for batch in examples.batches(batch_size, device=device):
            logits = self.logits(model, self.fused(model, self.encode(model, batch))).double()
            y = self.labels(batch)[:, None]
            rest = logits.scatter(1, y, float("-inf")).logsumexp(1)
            out.append((logits.gather(1, y)[:, 0] - rest).cpu())
        return torch.cat(out).numpy() if out else np.zeros(0)

    @torch.no_grad()
    def summarise(self, model: MultimodalModel, name: str, forget: ExampleSet, retain: ExampleSet,
                  seed: int = 0) -> dict:
        """One row about a model after (or before) a deletion: `model` (its name), the D_f score (D_f against D_r,
        ranked by log-odds), the mean P(ground truth) on D_f, D_r and test, and D_test."""
        from scipy.special import expit

        from ..metrics import d_f_score

        z = {k: self.true_logodds(model, s) for k, s in (("forget", forget), ("retain", retain), ("test", self.test))}
        p = {k: float(expit(v).mean()) for k, v in z.items()}
        return {"model": name, "d_f": d_f_score(z["forget"], z["retain"], seed=seed), "p_forget": p["forget"],
                "p_retain": p["retain"], "p_test": p["test"], "d_test": self.evaluate(model, "test")["d_test"]}

    def quick_evaluate(self, model: MultimodalModel, examples: ExampleSet) -> float:
        """A cheap version of d_test, for monitoring during unlearning."""
        return self.evaluate(model, examples)["d_test"]

    @torch.no_grad()
    def evaluate(self, model: MultimodalModel, split: str | ExampleSet = "test", batch_size: int = 256) -> dict[str, float]:
        """Task metric on a split; `d_test` is the headline number (accuracy in % for classification)."""
        from ..metrics import accuracy

        examples = self.split(split) if isinstance(split, str) else split
        model.eval()
        device = next(model.parameters()).device
        logits, labels = [], []
        for batch in examples.batches(batch_size, device=device):
            enc = self.encode(model, batch)
            logits.append(self.logits(model, self.fused(model, enc)).float().cpu())
            labels.append(batch["label"].cpu())
        acc = accuracy(torch.cat(logits), torch.cat(labels))
        return {"d_test": acc, "accuracy": acc}


def derangement(units: torch.Tensor, generator: torch.Generator, strict: bool = True) -> torch.Tensor:
    """A permutation `p` of the batch with units[p[i]] != units[i] for every i (no example keeps its own
    text, nor a text of the same deletion unit). None exists when one unit holds more than half of the
    batch: then `strict` raises, otherwise the closest permutation is returned (no example keeps its own
    text, as few as possible keep a text of their unit) with a warning."""
    n = len(units)
    counts = torch.unique(units, return_counts=True)[1]
    shift = int(counts.max())
    if shift * 2 > n:
        message = ("no derangement exists: one unit holds more than half of the batch "
                   f"({shift} of {n} examples); use larger batches or more deletion units")
        if strict or n < 2:
            raise ValueError(message)
        warnings.warn(message + "; some unrelated pairs share a unit", stacklevel=2)
        shift = n // 2
    else:
        for _ in range(100):
            p = torch.randperm(n, generator=generator)
            if not (units[p] == units).any():
                return p
    # Fallback that always works when a derangement exists: sort by unit, rotate by the largest unit's count.
    order = torch.argsort(units, stable=True)
    p = torch.empty_like(order)
    p[order] = order.roll(shift)
    return p
