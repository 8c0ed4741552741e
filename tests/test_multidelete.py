"""MultiDelete's losses on hand-computed cases, the method contract, and MultiDelete(-F) behaviour."""
from __future__ import annotations

import copy

import pytest
import torch

from mdlib import losses
from mdlib.methods import FrozenModel, available, get_method, unlearn
from mdlib.metrics import d_f_score
from mdlib.tasks import derangement


def test_losses_hand_computed():
    a = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    b = torch.tensor([[1.0, 0.0], [0.0, 4.0]])
    # MSE: ((0)^2 + 2^2 + 3^2 + 0^2) / 4 = 13/4
    assert losses.modality_decoupling_loss(a, b).item() == pytest.approx(3.25)
    assert losses.multimodal_retention_loss(a, b).item() == pytest.approx(3.25)
    assert losses.unimodal_retention_loss(a, b).item() == pytest.approx(3.25)
    assert losses.unimodal_retention_loss(a, a).item() == 0
    # cosine distance: rows (1,2)/(1,0) -> 1 - 1/sqrt(5); (3,4)/(0,4) -> 1 - 4/5
    expected = ((1 - 1 / 5 ** 0.5) + (1 - 0.8)) / 2
    assert losses.cosine_distance(a, b).item() == pytest.approx(expected)
    s1, s2 = torch.tensor([[1.0, 0.0], [2.0, 0.0]]), torch.zeros(2, 2)
    assert losses.similarity_decoupling_loss(s1, s2).item() == pytest.approx(5 / 4)
    # both directions count: image-to-text rows, then text-to-image rows (the transposes), under `dis`
    s1, s2 = torch.tensor([[1.0, 0.0], [1.0, 1.0]]), torch.tensor([[0.0, 1.0], [2.0, 1.0]])
    rows = (1 + (1 - 3 / 10 ** 0.5)) / 2  # (1,0)/(0,1) -> 1; (1,1)/(2,1) -> 1 - 3/sqrt(10)
    columns = 1 - 2 ** -0.5  # (1,1)/(0,2) and (0,1)/(1,1) -> 1 - 1/sqrt(2) each
    assert losses.similarity_decoupling_loss(s1, s2, losses.cosine_distance).item() == pytest.approx(
        (rows + columns) / 2)
    total = losses.multidelete_loss(torch.tensor(1.0), torch.tensor(2.0), torch.tensor(3.0), 1.0, 0.5, 2.0)
    assert total.item() == pytest.approx(1 + 1 + 6)
    with pytest.raises(ValueError, match="unknown distance"):
        losses.get_distance("manhattan-ish")


@pytest.mark.parametrize("loss", [losses.modality_decoupling_loss, losses.similarity_decoupling_loss,
                                  losses.multimodal_retention_loss, losses.unimodal_retention_loss])
def test_targets_carry_no_gradient(loss):
    """Each loss pulls f' towards the frozen f's outputs: the second argument is a target, never trained."""
    a = torch.randn(3, 3, requires_grad=True)
    b = torch.randn(3, 3, requires_grad=True)
    loss(a, b).backward()
    assert a.grad is not None and a.grad.abs().sum() > 0 and b.grad is None


@pytest.mark.parametrize("units", [[0, 0, 1, 1, 2, 2], [5, 6], [1, 1, 1, 2, 3, 4], list(range(10))])
def test_derangement_has_no_fixed_unit(units):
    units = torch.tensor(units)
    for seed in range(20):
        p = derangement(units, torch.Generator().manual_seed(seed))
        assert sorted(p.tolist()) == list(range(len(units)))
        assert not (units[p] == units).any()


def test_derangement_impossible_cases():
    with pytest.raises(ValueError):
        derangement(torch.tensor([3, 3, 3]), torch.Generator().manual_seed(0))
    with pytest.raises(ValueError):
        derangement(torch.tensor([1, 1, 1, 2]), torch.Generator().manual_seed(0))
    # non-strict: a warning and the closest permutation, which never keeps an example's own text
    for units in (torch.tensor([3, 3, 3]), torch.tensor([1, 1, 1, 2])):
        with pytest.warns(UserWarning, match="no derangement"):
            p = derangement(units, torch.Generator().manual_seed(0), strict=False)
        assert sorted(p.tolist()) == list(range(len(units))) and (p != torch.arange(len(units))).all()


def test_retention_losses_are_zero_when_f_prime_equals_f(fast_task, trained_fast_model):
    frozen = FrozenModel(trained_fast_model, fast_task)
    f_prime = copy.deepcopy(trained_fast_model)
    batch = fast_task.train.batch(torch.arange(16))
    method = get_method("multidelete")
    parts = method.losses(f_prime, frozen, fast_task, batch, fast_task.train.batch(torch.arange(16, 48)),
                          torch.Generator().manual_seed(0))
    assert parts["mkr"].item() < 1e-10 and parts["ukr"].item() < 1e-10
    assert parts["md"].item() > 1e-8  # deleted pairs are not (yet) represented like unrelated ones


def test_frozen_cache_matches_recomputation(fast_task, trained_fast_model):
    cached, fresh = FrozenModel(trained_fast_model, fast_task), FrozenModel(trained_fast_model, fast_task, cache=False)
    for idx in (torch.arange(8), torch.arange(4, 12)):  # overlapping batches: half from the cache
        b = fast_task.train.batch(idx)
        assert torch.allclose(cached.fused(b), fresh.fused(b), atol=1e-5)
        e1, e2 = cached.encoded(b), fresh.encoded(b)
        assert torch.allclose(e1.text * e1.text_mask[..., None], e2.text * e2.text_mask[..., None], atol=1e-5)
        assert torch.allclose(e1.image, e2.image, atol=1e-5)


def test_registry_and_errors():
    assert {"multidelete", "multidelete-f"} <= set(available())
    with pytest.raises(ValueError, match="unknown method 'multidelet'"):
        get_method("multidelet")
    with pytest.raises(ValueError, match="unknown hyperparameter"):
        get_method("multidelete", learning_rate=1e-3)
    with pytest.raises(TypeError, match="epochs must be an int"):
        get_method("multidelete", epochs=2.5)
    with pytest.raises(ValueError, match="lr must be positive"):
        get_method("multidelete", lr=0.0)
    with pytest.raises(ValueError, match="alpha must be non-negative"):
        get_method("multidelete", alpha=-1.0)
    with pytest.raises(ValueError, match="md_readout"):
        get_method("multidelete", md_readout="pooler")
    with pytest.raises(ValueError, match="fusion-only"):
        get_method("multidelete-f", md_readout="similarity")


def test_method_refuses_overlapping_or_empty_sets(fast_task, trained_fast_model):
    forget, retain = fast_task.forget_split(5, seed=0)
    with pytest.raises(ValueError, match="both the forget and the retain"):
        unlearn("multidelete", trained_fast_model, fast_task, forget, fast_task.train, progress=False)
    with pytest.raises(ValueError, match="empty"):
        unlearn("multidelete", trained_fast_model, fast_task, forget.subset([]), retain, progress=False)


def test_multidelete_f_leaves_encoders_bit_identical(fast_task, trained_fast_model):
    forget, retain = fast_task.forget_split(10, seed=0)
    result = unlearn("multidelete-f", trained_fast_model, fast_task, forget, retain, None, epochs=2, select="last",
                     min_steps=0, progress=False)
    for (name, a), b in zip(trained_fast_model.named_parameters(), result.model.parameters()):
        if name.startswith(("image_encoder", "text_encoder", "image_proj", "text_proj", "logit_scale", "mlm_head")):
            assert torch.equal(a, b), name
    changed = any(not torch.equal(a, b) for a, b in zip(trained_fast_model.fusion_parameters(),
                                                         result.model.fusion_parameters()))
    assert changed, "the fusion module must move"


def test_multidelete_lowers_the_d_f_score_and_leaves_the_original_untouched(fast_task, trained_fast_model):
    before = {k: v.clone() for k, v in trained_fast_model.state_dict().items()}
    forget, retain = fast_task.forget_split(20, seed=1)
    score = lambda m: d_f_score(fast_task.true_probability(m, forget), fast_task.true_probability(m, retain))  # noqa: E731
    result = unlearn("multidelete", trained_fast_model, fast_task, forget, retain, fast_task.val, epochs=6,
                     lr=2e-4, select="last", seed=0, progress=False)
    assert score(result.model) < score(trained_fast_model) - 5
    for k, v in trained_fast_model.state_dict().items():
        assert torch.equal(v, before[k]), "unlearning must not modify the original model"
    assert result.history[0]["step"] == 0 and result.history[-1]["step"] > 0
    assert result.seconds > 0


def test_unlearning_is_reproducible(fast_task, trained_fast_model):
    forget, retain = fast_task.forget_split(10, seed=2)
    runs = [unlearn("multidelete", trained_fast_model, fast_task, forget, retain, None, epochs=1, seed=7,
                    min_steps=0, progress=False) for _ in range(2)]
    for a, b in zip(runs[0].model.parameters(), runs[1].model.parameters()):
        assert torch.equal(a, b)
