"""NLVR-style reasoning (NLVR2-shaped) over pairs of images of the embedded scene world.

An example is (left image, right image, statement), labelled true (1) or false (0): "both
images contain a red shape", "the left image has more circles than the right image"...
(see `mdlib.data.reasoning`). The model fuses each image with the statement and the head
reads both fused [CLS] concatenated (`n_images = 2`): a batch's `image` is (B, 2, 3, S, S)
and `image_index` is (N, 2).

The images of each split are paired once, so every image belongs to exactly one pair; the
deletion unit is the pair (all statements about a deleted pair, and hence about both of its
images, leave together). Metric: accuracy; D_f score on the log-odds of the true label. The objective is
`StatementTask.training_loss` (cross-entropy + description ITC and image-conditioned MLM on
one image, a random side, of every example).
"""
from __future__ import annotations

import numpy as np
import torch

from ..data.reasoning import NLVR_LABELS, NLVR_TEMPLATES, Grammar, Statement, world_pairs
from ..data.world import SceneWorld
from .entailment import StatementTask


class NLVRTask(StatementTask):
    name = "nlvr"
    n_classes = 2
    n_images = 2
    unit_name = "pair"
    class_names = NLVR_LABELS
    templates = NLVR_TEMPLATES

    @staticmethod
    def statements_per_pair(fast: bool) -> int:
        """Statements per pair, not counting the photographer statement: 8 in fast mode, 16 in full mode.

        Measured, full mode, seed 0, 1,000 training pairs, one run each:
        * 8 per pair, 15 epochs: test 57.9; even training accuracy stayed at 56-82% per template;
        * 8 per pair, 30 epochs (18 min): train 94-99% per template, validation flat at 67-69% from epoch
          21, test 67.1: the model memorises its 9,000 statements instead of learning to compare images;
        * 16 per pair, 20 epochs (23 min): train 86-91%, test 72.6 (71-78% on every comparison template,
          47.2% on the photographer's, which no image can tell). A second run of this recipe, through
          `original_model` (with another draw of the then order-dependent tokenizer vocabulary, so another
          initialisation: see `mdlib.data.tokenizer`), reached
          67.4: it learnt "side", "both" and "one" (74-82%) but not "neither" and "more" (56% and 49%),
          which the first run learnt late.
        More statements about the same images help; whether the comparisons are learnt within 20 epochs
        varies from run to run. The fast world is too small to learn anyway."""
        return 8 if fast else 16

    @classmethod
    def build_options(cls, fast: bool) -> dict:
        return {"per_pair": cls.statements_per_pair(fast)}

    def train_overrides(self, fast: bool) -> dict:
        """Full mode: every statement in every epoch, 20 epochs (see `statements_per_pair`)."""
        return {} if fast else {"one_per_unit": False, "epochs": 20, "eval_every": 2}

    @classmethod
    def build(cls, world: SceneWorld, model_defaults: dict, tokenizer_path, per_pair: int = 8,
              grammar: str | Grammar = "simple") -> "NLVRTask":
        """The task on an embedded world, with a tokenizer trained on its texts (cached at `tokenizer_path`)."""
        made = world_pairs(world, per_pair, grammar)
        tokenizer = cls._tokenizer(world, made[2], tokenizer_path)
        return cls.from_world(world, tokenizer, dict(model_defaults, vocab_size=tokenizer.vocab_size), made=made)

    @classmethod
    def from_world(cls, world: SceneWorld, tokenizer, model_defaults: dict, per_pair: int = 8,
                   grammar: str | Grammar = "simple",
                   made: tuple[np.ndarray, np.ndarray, list[list[Statement]]] | None = None) -> "NLVRTask":
        """Examples: `per_pair` statements per pair (or `made`, the output of `world_pairs`); fields
        image_index (N, 2), label (N,), template (N,), unit = the pair id (a row of `task.pairs`, (P, 2))."""
        pairs, pair_split, statements = made if made is not None else world_pairs(world, per_pair, grammar)
        pair_of = torch.as_tensor(np.repeat(np.arange(len(pairs)), [len(ss) for ss in statements]))
        task = cls._assemble(world, tokenizer, model_defaults, statements, torch.as_tensor(pairs)[pair_of], pair_of,
                             pair_split)
        task.pairs = pairs
        return task
