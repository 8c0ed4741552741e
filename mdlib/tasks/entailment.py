"""Visual entailment (SNLI-VE-shaped) on the embedded scene world.

An example is (premise image, hypothesis); the label is entailment / neutral / contradiction
(see `mdlib.data.reasoning` for how hypotheses are made and why their labels depend on the
image). The model fuses the image with the hypothesis and a 3-way head reads the fused
[CLS]. The deletion unit is the image: all hypotheses of a deleted image leave together.
Metric: accuracy (`Task.evaluate`); D_f score on P(true label) (`Task.true_probability`).

Training objective (`StatementTask.training_loss`): the head's cross-entropy plus an
auxiliary image-description contrastive loss (ITC), the stand-in for the image-text
pre-training that ALBEF/BLIP receive before they are fine-tuned on SNLI-VE or NLVR2.
Without it a model trained from scratch learns only the hypothesis-only prior (DESIGN.md
section 9 describes the same stall for ITM). The descriptions belong to the batch's own
images, so a deleted unit takes its descriptions with it.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..data.examples import Batch, ExampleSet
from ..data.reasoning import (
    ENTAILMENT_LABELS, ENTAILMENT_TEMPLATES, Statement, fit_tokenizer, tokenize, world_descriptions, world_hypotheses,
)
from ..data.world import SPLITS, SceneWorld
from ..models import MultimodalModel
from .base import Task
from .retrieval import image_tensor


class StatementTask(Task):
    """Shared parts of the statement tasks (entailment, NLVR): banks, the objective, per-template accuracy.

    Attributes set by the builders: `world`, `texts` (the statement of each example id) and
    `templates` (names indexed by the examples' `template` field, (N,)). Banks: `image`
    (M, 3, S, S) and the images' descriptions `desc_input_ids` / `desc_attention_mask` (M, K, L).
    """

    templates: tuple[str, ...] = ()
    descriptions_per_image: int = 3
    itc_weight: float = 1.0  # default weight of the auxiliary description ITC in `training_loss`

    # -- building -----------------------------------------------------------------------
    @staticmethod
    def _max_len(model_defaults: dict) -> int:
        return int(model_defaults.get("max_text_len", 64))

    @classmethod
    def _tokenizer(cls, world: SceneWorld, statements: list[list[Statement]], tokenizer_path):
        """Trained (or loaded) on this task's statements and the images' descriptions."""
        texts = [s.text for ss in statements for s in ss]
        texts += [d for ds in world_descriptions(world, cls.descriptions_per_image) for d in ds]
        return fit_tokenizer(texts, tokenizer_path)

    @classmethod
    def _assemble(cls, world: SceneWorld, tokenizer, model_defaults: dict, statements: list[list[Statement]],
                  image_index: torch.Tensor, unit: torch.Tensor, unit_split: np.ndarray) -> "StatementTask":
        """Tokenise, build the banks and the examples, split by unit (`unit_split[u]` = the split of unit u)."""
        max_len = cls._max_len(model_defaults)
        flat = [s for ss in statements for s in ss]
        ids, mask = tokenize(tokenizer, [s.text for s in flat], max_len)
        descs = world_descriptions(world, cls.descriptions_per_image)
        d_ids, d_mask = tokenize(tokenizer, [d for ds in descs for d in ds], max_len)
        banks = {"image": image_tensor(world.images),
                 "desc_input_ids": d_ids.view(len(world), cls.descriptions_per_image, -1),
                 "desc_attention_mask": d_mask.view(len(world), cls.descriptions_per_image, -1)}
        fields = {
            "image_index": image_index, "input_ids": ids, "attention_mask": mask,
            "label": torch.tensor([s.label for s in flat]),
            "template": torch.tensor([cls.templates.index(s.template) for s in flat]),
            "unit": unit, "example_id": torch.arange(len(flat)),
        }
        everything = ExampleSet(fields, banks, name="all")
        splits = [everything.with_units(np.flatnonzero(unit_split == s), s) for s in SPLITS]
        task = cls(*splits, tokenizer=tokenizer, model_defaults=model_defaults)
        task.world, task.texts = world, [s.text for s in flat]
        return task

    # -- objective --------------------------------------------------------------------------
    def training_loss(self, model: MultimodalModel, batch: Batch, generator: torch.Generator | None = None,
                      mlm_weight: float = 0.0, itc_weight: float | None = None,
                      **options) -> tuple[torch.Tensor, dict[str, float]]:
        """Cross-entropy of the head + `itc_weight` x description ITC (+ `mlm_weight` x MLM of the statements)."""
        itc_weight = self.itc_weight if itc_weight is None else itc_weight
        enc = self.encode(model, batch)
        ce = F.cross_entropy(self.logits(model, self.fused(model, enc)), batch["label"])
        loss, logs = ce, {"ce": ce.item()}
        if itc_weight > 0:
            itc = self.description_itc(model, batch, enc, generator)
            loss = loss + itc_weight * itc
            logs["itc"] = itc.item()
        if mlm_weight > 0:
            mlm = self.mlm_loss(model, batch, generator)
            loss = loss + mlm_weight * mlm
            logs["mlm"] = mlm.item()
        return loss, {"loss": loss.item(), **logs}

    def description_itc(self, model: MultimodalModel, batch: Batch, enc, generator: torch.Generator | None = None
                        ) -> torch.Tensor:
        """Image-text contrastive loss between the batch's images (all B x n_images) and a random
        description of each; several copies of one image count as positives of each other's descriptions."""
        images = batch["image_index"].reshape(-1).cpu()  # (B * n_images,)
        bank_ids, bank_mask = self.train.banks["desc_input_ids"], self.train.banks["desc_attention_mask"]
        pick = torch.randint(bank_ids.shape[1], (len(images),), generator=generator)
        mask = bank_mask[images, pick]
        width = int(mask.sum(1).max())
        device = batch["input_ids"].device
        ids, mask = bank_ids[images, pick, :width].to(device), mask[:, :width].to(device)
        img_feat, txt_feat = model.contrastive_features(enc.image.flatten(0, 1), model.encode_text(ids, mask))
        sim = model.temperature_scale() * img_feat @ txt_feat.t()  # (B*n, B*n)
        images = images.to(device)
        same = (images[:, None] == images[None, :]).float()
        targets = same / same.sum(1, keepdim=True)
        return -(sim.log_softmax(1) * targets).sum(1).mean() / 2 - (sim.t().log_softmax(1) * targets).sum(1).mean() / 2

    # -- readouts for teaching --------------------------------------------------------------
    @torch.no_grad()
    def predictions(self, model: MultimodalModel, split: str | ExampleSet = "test",
                    batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
        """(predicted class (N,), true label (N,)) on a split."""
        examples = self.split(split) if isinstance(split, str) else split
        model.eval()
        device = next(model.parameters()).device
        pred = []
        for batch in examples.batches(batch_size, device=device):
            pred.append(self.logits(model, self.fused(model, self.encode(model, batch))).argmax(-1).cpu())
        return torch.cat(pred).numpy(), examples.fields["label"].numpy()

    def accuracy_by_template(self, model: MultimodalModel, split: str | ExampleSet = "test") -> dict[str, float]:
        """Accuracy (%) per statement template on a split: which kinds of statement the model has learnt."""
        examples = self.split(split) if isinstance(split, str) else split
        pred, label = self.predictions(model, examples)
        template = examples.fields["template"].numpy()
        return {name: 100.0 * float((pred[template == k] == label[template == k]).mean())
                for k, name in enumerate(self.templates) if (template == k).any()}

    def examples_table(self, split: str = "train", n: int = 10) -> list[dict]:
        """The first `n` examples of a split as readable rows (image, unit, text, label, template)."""
        ex = self.split(split)
        return [{"image": ex.fields["image_index"][i].tolist(), "unit": int(ex.fields["unit"][i]),
                 "text": self.texts[int(ex.fields["example_id"][i])],
                 "label": self.class_names[int(ex.fields["label"][i])],
                 "template": self.templates[int(ex.fields["template"][i])]} for i in range(min(n, len(ex)))]


class EntailmentTask(StatementTask):
    name = "entailment"
    n_classes = 3
    n_images = 1
    unit_name = "image"
    class_names = ENTAILMENT_LABELS
    templates = ENTAILMENT_TEMPLATES

    @classmethod
    def build(cls, world: SceneWorld, model_defaults: dict, tokenizer_path, per_image: int = 6) -> "EntailmentTask":
        """The task on an embedded world, with a tokenizer trained on its texts (cached at `tokenizer_path`)."""
        statements = world_hypotheses(world, per_image)
        tokenizer = cls._tokenizer(world, statements, tokenizer_path)
        return cls.from_world(world, tokenizer, dict(model_defaults, vocab_size=tokenizer.vocab_size),
                              per_image=per_image, statements=statements)

    @classmethod
    def from_world(cls, world: SceneWorld, tokenizer, model_defaults: dict, per_image: int = 6,
                   statements: list[list[Statement]] | None = None) -> "EntailmentTask":
        """Examples: `per_image` hypotheses per image; fields image_index (N,), label (N,), template (N,),
        unit = the image."""
        statements = statements if statements is not None else world_hypotheses(world, per_image)
        if len(statements) != len(world):
            raise ValueError(f"need one list of hypotheses per image: {len(statements)} lists for {len(world)} images")
        image_index = torch.as_tensor(np.repeat(np.arange(len(world)), [len(ss) for ss in statements]))
        return cls._assemble(world, tokenizer, model_defaults, statements, image_index, image_index.clone(),
                             np.asarray(world.split))
