"""Metric functions on hand-made cases."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mdlib.attacks import true_logodds
from mdlib.data.examples import ExampleSet
from mdlib.metrics import accuracy, auc, binary_accuracy, d_f_score, recall_at_k
from mdlib.tasks.base import Task


def test_recall_perfect_and_hand_made():
    # 3 images, 6 texts (2 per image)
    t2i = torch.tensor([0, 0, 1, 1, 2, 2])
    perfect = (t2i[None, :] == torch.arange(3)[:, None]).float()
    r = recall_at_k(perfect, t2i, ks=(1, 2))
    assert r["tr_r1"] == 100 and r["ir_r1"] == 100 and r["r_mean"] == 100
    scores = torch.tensor([
        [0.1, 0.2, 0.9, 0.0, 0.0, 0.0],   # image 0: best text is image 1's -> its own at rank 1 (second)
        [0.0, 0.0, 0.8, 0.1, 0.0, 0.0],   # image 1: own text first
        [0.5, 0.0, 0.0, 0.0, 0.1, 0.0],   # image 2: own text at rank 1
    ])
    r = recall_at_k(scores, t2i, ks=(1, 2))
    assert r["tr_r1"] == pytest.approx(100 / 3)
    assert r["tr_r2"] == pytest.approx(100)
    # IR: text 0 ranks images (0.1, 0.0, 0.5) -> its image 0 is second; text 2 -> image 1 is second (0.9 vs 0.8)
    ir_rank1 = [scores[:, j].argmax().item() == t2i[j].item() for j in range(6)]
    assert r["ir_r1"] == pytest.approx(100 * np.mean(ir_rank1))
    with pytest.raises(ValueError):
        recall_at_k(scores, torch.tensor([0, 1]))


def test_auc_hand_made():
    assert auc([2, 3], [0, 1]) == 1.0
    assert auc([0, 1], [2, 3]) == 0.0
    assert auc([1, 1], [1, 1]) == 0.5  # ties count one half
    assert auc([1, 3], [2]) == 0.5
    with pytest.raises(ValueError):
        auc([], [1])


def test_d_f_score():
    rng = np.random.default_rng(0)
    retain = rng.normal(size=1000)
    assert abs(d_f_score(rng.normal(size=100), retain) - 50) < 8  # same distribution: about 50
    assert d_f_score(retain[:100] - 10, retain) < 1  # D_f far below D_r: about 0
    assert d_f_score(np.full(10, 5.0), np.full(50, 4.0)) == 100.0  # every D_f score above every D_r score
    assert d_f_score(np.full(10, 5.0), np.full(50, 6.0)) == 0.0
    assert d_f_score(np.full(10, 5.0), np.full(50, 5.0)) == 50.0  # ties count one half
    # five disjoint chunks of |D_f| from D_r: when they cover D_r exactly, every seed gives the same score
    # (10 of 50 retained scores above D_f: 80), which chunks drawn with overlap or replacement would not
    below_and_above = np.r_[np.zeros(40), np.ones(10)]
    assert all(d_f_score(np.full(10, 0.5), below_and_above, seed=s) == pytest.approx(80.0) for s in range(10))
    # with D_r larger than 5 |D_f| the seed picks which retained examples are read
    forget = rng.normal(size=10)
    assert len({d_f_score(forget, retain, seed=s) for s in range(5)}) > 1


def test_accuracy_functions():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    assert accuracy(logits, torch.tensor([0, 1, 1])) == pytest.approx(200 / 3)
    assert binary_accuracy(torch.tensor([0.9, 0.4]), torch.tensor([0.1, 0.6])) == 50.0


class _FixedLogits(Task):
    """A task whose head outputs the logits stored in each example (no model involved)."""

    n_classes = 3

    def __init__(self):
        pass

    def encode(self, model, batch):
        return batch

    def fused(self, model, enc, text_perm=None):
        return enc["logits"]

    def logits(self, model, fused):
        return fused.float()


def test_logodds_order_examples_whose_probabilities_tie_at_one():
    # log-odds 18 and 25 of the true class (label 1; classes 0 and 2 share the rest): P(true) rounds to 1.0 in float32
    logits = torch.tensor([[0.0, 18.0 + np.log(2), 0.0], [0.0, 25.0 + np.log(2), 0.0], [0.0, 1.0, 0.0]])
    examples = ExampleSet({"logits": logits, "label": torch.ones(3, dtype=torch.long), "unit": torch.arange(3),
                           "example_id": torch.arange(3)})
    task, model = _FixedLogits(), torch.nn.Linear(1, 1)
    p = task.true_probability(model, examples)
    assert p[0] == p[1] == 1.0  # the tie
    z = task.true_logodds(model, examples)
    assert z.dtype == np.float64
    np.testing.assert_allclose(z, [18.0, 25.0, 1.0 - np.log(2)], atol=1e-5)
    assert z[1] > z[0] > z[2]
    # the D_f score of the more confident example against the less confident one: 100 by log-odds, 50 by probability
    assert d_f_score(z[1:2], z[0:1], n_chunks=1) == 100.0
    assert d_f_score(p[1:2], p[0:1], n_chunks=1) == 50.0
    assert true_logodds(model, task, examples).tolist() == z.tolist()  # the attacks read the same score


def test_mean_interval_widens_with_spread_and_leaves_out_infinite_values():
    from mdlib.metrics import mean_interval

    mean, half = mean_interval([1.0, 2.0, 3.0])
    assert mean == 2.0 and half == pytest.approx(4.303 * 1.0 / 3 ** 0.5, rel=1e-3)  # t(0.975, 2 df) x sd / sqrt(n)
    assert mean_interval([1.0, 2.0, 3.0, np.inf]) == (mean, half)
    assert mean_interval([5.0])[0] == 5.0 and np.isnan(mean_interval([5.0])[1])
    assert all(np.isnan(mean_interval([])))
