"""The baselines of Table 1 under the one method contract, on a tiny model of the fast retrieval task."""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from mdlib.methods import (available, dtd_noise_scale, fisher_newton_direction, foci, get_method, newton_noise_scale,
                           unlearn)
from mdlib.methods import retrain as retrain_module
from mdlib.methods.ermktp import image_consumers
from mdlib.methods.neggrad import mean_example_loss
from mdlib.methods.recipe import original_loss_options
from mdlib.methods.ul import mean_mlm_loss
from mdlib.models import MultimodalModel
from mdlib.tasks import load_task
from mdlib.training import TrainConfig, train

BASELINES = ["retrain", "retrain-f", "finetune", "finetune-f", "neggrad", "neggrad-f", "dtd", "dtd-f", "l-codec",
             "l-codec-f", "erm-ktp", "ul", "ul-f"]
ENCODER_PREFIXES = ("image_encoder.", "text_encoder.", "image_proj.", "text_proj.", "logit_scale", "mlm_head.")
TINY_TRAIN = dict(epochs=1, batch_size=32, warmup_steps=1)
# small settings per method so that every run takes about a second
FAST = {
    "retrain": dict(train_config=TINY_TRAIN),
    "l-codec": dict(scrub_batch=10, n_perturbations=12, fisher_batches=4, max_units=8),
    "erm-ktp": dict(epochs=2, forget_batch=8, retain_batch=16, mask_steps=4, min_steps=0),
    "dtd": dict(epochs=1, forget_batch=8, retain_batch=16, min_steps=0),
}
OPTIMISED = dict(epochs=1, forget_batch=8, retain_batch=16, select="last", min_steps=0)


def fast_hparams(name: str, **extra) -> dict:
    base = name[:-2] if name.endswith("-f") else name
    return {**FAST.get(base, OPTIMISED), **extra}


def tiny_env(task_name: str, n_units: int, epochs: int) -> SimpleNamespace:
    """A tiny model trained briefly on `n_units` deletion units of the task's fast data; D_f = 4 units."""
    task = load_task(task_name, fast=True)
    config = task.model_config(hidden=32, intermediate=64, image_layers=1, text_layers=1, fusion_layers=1, heads=2,
                               embed_dim=32)
    units = task.train.units()[:n_units]
    data = task.train.with_units(units, "tiny D_train")
    torch.manual_seed(0)
    model = MultimodalModel(config)
    train(model, task, data, TrainConfig(epochs=epochs, batch_size=32, lr=2e-3, warmup_steps=2), seed=0,
          progress=False)
    model.eval()
    return SimpleNamespace(task=task, model=model, forget=data.with_units(units[:4], "D_f"),
                           retain=data.without_units(units[:4], "D_r"),
                           val=task.val.with_units(task.val.units()[:8], "val"))


@pytest.fixture(scope="module")
def env():
    """60 images of the fast retrieval world; D_f = 4 images (20 pairs)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: one thread is several times faster on a shared machine
    yield tiny_env("retrieval", 60, epochs=4)
    torch.set_num_threads(threads)


def run(env, name, seed=0, **extra):
    return unlearn(name, env.model, env.task, env.forget, env.retain, env.val, seed=seed, progress=False,
                   **fast_hparams(name, **extra))


def snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_every_baseline_is_registered():
    names = set(available())
    assert set(BASELINES) <= names
    assert "erm-ktp-f" not in names  # N/A in the paper


@pytest.mark.parametrize("name", BASELINES)
def test_baseline_changes_model_deterministically(env, name):
    before = snapshot(env.model)
    first, second = run(env, name), run(env, name)
    assert first.method == name and first.seconds > 0
    after = snapshot(env.model)
    assert all(torch.equal(before[k], after[k]) for k in before), "the original model f was modified"
    new, again = first.model.state_dict(), second.model.state_dict()
    assert all(torch.isfinite(v).all() for v in new.values() if v.is_floating_point())
    changed = [k for k in before if not torch.equal(before[k], new[k])]
    assert changed, f"{name} left the model unchanged"
    assert all(torch.equal(new[k], again[k]) for k in new), f"{name} is not deterministic given the seed"
    if name.endswith("-f"):
        moved = [k for k in changed if k.startswith(ENCODER_PREFIXES)]
        assert not moved, f"{name} changed encoder parameters {moved[:3]}"
        assert all(k.startswith(("fusion.", "head.", "image_to_fusion.")) for k in changed)
    assert "step" in first.best and "d_f" in first.best and first.history


@pytest.mark.parametrize("name", [m for m in BASELINES if not m.startswith("retrain")]
                         + ["multidelete", "multidelete-f"])
def test_skipping_the_logging_checks_gives_the_same_model(env, name):
    """history=False (the protocol's runs) skips only checks nothing reads: the same f', a shorter log."""
    hparams = fast_hparams(name)
    if hasattr(get_method(name).config, "select"):  # as protocol.grid sets it
        hparams["select"] = "last"
    logged = unlearn(name, env.model, env.task, env.forget, env.retain, env.val, seed=0, progress=False, **hparams)
    quiet = unlearn(name, env.model, env.task, env.forget, env.retain, env.val, seed=0, progress=False,
                    history=False, **hparams)
    a, b = logged.model.state_dict(), quiet.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a), f"{name}: skipping the logging checks changed f'"
    assert quiet.notes == logged.notes
    assert len(quiet.history) <= len(logged.history)
    if name.startswith(("finetune", "multidelete")):  # no guard, nothing to pick: no check at all
        assert quiet.history == [{"step": logged.history[-1]["step"]}] and "d_f" in logged.history[-1]


def test_different_seeds_give_different_models(env):
    a, b = run(env, "dtd", seed=0), run(env, "dtd", seed=1)
    assert not torch.equal(a.model.head[0].weight, b.model.head[0].weight)


@pytest.mark.parametrize("name", ["retrain", "retrain-f", "finetune", "dtd"])
def test_retained_data_only(env, name, monkeypatch):
    """Retrain (and the D_r descent of FineTune and DtD) never feed a D_f pair to the training objective."""
    seen, trained_on = [], []
    original_loss = env.task.training_loss

    def spy(model, batch, *args, **kwargs):
        seen.append(batch["unit"].cpu().numpy())
        return original_loss(model, batch, *args, **kwargs)

    def train_spy(model, task, data, *args, **kwargs):
        trained_on.append(data)
        return train(model, task, data, *args, **kwargs)

    monkeypatch.setattr(env.task, "training_loss", spy)
    monkeypatch.setattr(retrain_module, "train", train_spy)
    run(env, name)
    assert seen, "the training objective was never called"
    assert not np.isin(np.concatenate(seen), env.forget.units()).any()
    if name.startswith("retrain"):
        (data,) = trained_on
        assert len(data) == len(env.retain) and np.array_equal(data.units(), env.retain.units())


@pytest.mark.parametrize("name", ["finetune", "neggrad", "dtd"])
def test_training_objective_is_the_original_recipe(env, name, monkeypatch):
    """FineTune, NegGrad and DtD's descent pass the original recipe's loss options, not the task's bare defaults."""
    options = []
    original_loss = env.task.training_loss

    def spy(model, batch, generator=None, **kwargs):
        options.append(kwargs)
        return original_loss(model, batch, generator, **kwargs)

    monkeypatch.setattr(env.task, "training_loss", spy)
    run(env, name)
    recipe = original_loss_options()
    assert options and all(o == recipe for o in options)
    config = TrainConfig()
    assert recipe == {"p_hard": config.p_hard, "p_minimal": config.p_minimal, "kind_weights": config.kind_weights,
                      "mlm_weight": config.mlm_weight, "itm_pos_weight": config.itm_pos_weight}
    assert original_loss_options(stage="early")["p_hard"] == 0.0


def test_finetune_budget_is_epochs_of_the_retain_set(env):
    assert get_method("finetune").config.lr == TrainConfig().lr  # the original's learning rate
    for retain_epochs in (1.0, 2.5):
        result = run(env, "finetune", retain_epochs=retain_epochs, lr=1e-12)
        steps = result.history[-1]["step"]
        needed = retain_epochs * len(env.retain) / 16  # retain_batch=16 in the fast settings
        assert needed <= steps < needed + len(env.forget) // 8 + 1  # rounded up to whole passes over D_f
    # None: the shared loop's epochs over D_f, as before
    assert run(env, "finetune", retain_epochs=None, lr=1e-12).history[-1]["step"] == len(env.forget) // 8


def test_retrain_starts_from_scratch(env):
    result = run(env, "retrain", train_config=dict(TINY_TRAIN, lr=1e-12))
    # a near-zero learning rate leaves the fresh initialisation: far from f, equal to a seeded new model
    fresh = retrain_module.fresh_model(env.model, 0)
    assert torch.allclose(result.model.head[0].weight, fresh.head[0].weight, atol=1e-6)
    assert not torch.allclose(result.model.head[0].weight, env.model.head[0].weight)


def forget_objective(env, model, objective):
    """The loss NegGrad ascends, on all of D_f (the same negatives for every model)."""
    if objective == "example":
        return mean_example_loss(model, env.task, env.forget)
    with torch.no_grad():
        batch = env.forget.batch(torch.arange(len(env.forget)))
        return env.task.training_loss(model.eval(), batch, torch.Generator().manual_seed(0))[0].item()


@pytest.mark.parametrize("name", ["neggrad", "neggrad-f"])
@pytest.mark.parametrize("objective", ["training", "example"])
def test_neggrad_ascends_the_forget_loss(env, name, objective):
    before = forget_objective(env, env.model, objective)
    result = run(env, name, objective=objective, lr=1e-3, epochs=3)
    assert forget_objective(env, result.model, objective) > before + 1e-3


def test_neggrad_divergence_guard_stops_and_reports(env):
    result = run(env, "neggrad", objective="example", lr=5e-3, epochs=6, max_retain_drop=1e-6, max_val_drop=None,
                 max_forget_loss=None)
    assert result.history[-1]["step"] < 12, "the guard did not stop the run"  # 6 epochs x 2 steps
    assert any("divergence guard" in n and "max_retain_drop" in n for n in result.notes), result.notes


def test_dtd_noise_scale_formula():
    eps, delta, lip, smooth, strong, n, steps = 5.0, 1e-4, 1.02, 3.98, 0.02, 1000, 10
    gamma = (smooth - strong) / (smooth + strong)
    sensitivity = 8 * lip * gamma ** steps / (strong * n * (1 - gamma ** steps))
    expected = sensitivity / (math.sqrt(2) * (math.sqrt(math.log(1 / delta) + eps) - math.sqrt(math.log(1 / delta))))
    assert dtd_noise_scale(eps, delta, lip, smooth, strong, n, steps) == pytest.approx(expected, rel=1e-12)
    assert dtd_noise_scale(eps, delta, lip, smooth, strong, n, steps + 5) < expected  # more descent, less noise
    assert dtd_noise_scale(2 * eps, delta, lip, smooth, strong, n, steps) < expected  # weaker privacy, less noise
    with pytest.raises(ValueError, match="strongly convex"):
        dtd_noise_scale(eps, delta, lip, smooth, 0.0, n, steps)
    with pytest.raises(ValueError, match="delta"):
        dtd_noise_scale(eps, 1.5, lip, smooth, strong, n, steps)


@pytest.mark.parametrize("name", ["dtd", "dtd-f"])
def test_dtd_adds_noise_of_the_formula_scale(env, name):
    # lr ~ 0: the descent does not move the weights, so the difference to f is the noise itself
    result = run(env, name, lr=1e-12)
    method = get_method(name, **fast_hparams(name, lr=1e-12))
    steps = result.history[-1]["step"]
    expected = dtd_noise_scale(n=len(env.retain), steps=steps, **method.config.constants(len(env.retain)))
    assert result.best["noise_sigma"] == pytest.approx(expected)
    noise = torch.cat([(b - a).flatten() for (k, a), b in zip(env.model.named_parameters(), result.model.parameters())
                       if not k.startswith(ENCODER_PREFIXES) or name == "dtd"])
    assert noise.std().item() == pytest.approx(expected, rel=0.03)
    assert abs(noise.mean().item()) < 0.03 * expected
    fixed = run(env, name, lr=1e-12, sigma=0.01)
    noise = torch.cat([(b - a).flatten()
                       for a, b in zip(env.model.fusion.parameters(), fixed.model.fusion.parameters())])
    assert noise.std().item() == pytest.approx(0.01, rel=0.05)


def test_foci_finds_the_informative_columns():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 30, generator=g)
    y = x[:, 7] + 0.5 * x[:, 21] ** 2 + 0.05 * torch.randn(200, generator=g)
    picked = foci(x, y, max_features=5)
    assert picked[:2] == [7, 21]
    assert foci(x, torch.ones(200), 5) == []  # a constant target depends on nothing


def test_fisher_newton_direction_solves_the_damped_system():
    g = torch.Generator().manual_seed(0)
    batch_grads, grad = torch.randn(6, 40, generator=g), torch.randn(40, generator=g)
    gd = batch_grads.double()
    hessian = 1e-2 * torch.eye(40, dtype=torch.float64) + (8 / 6) * gd.t() @ gd
    expected = torch.linalg.solve(hessian, grad.double()).float()
    assert torch.allclose(fisher_newton_direction(batch_grads, grad, 1e-2, batch_size=8), expected, rtol=1e-4)


def test_newton_noise_scale_formula():
    gamma = 2 * 0.25 * 1.0 ** 2 * 1 ** 2 / (1e-2 ** 3 * 5000 ** 2)
    assert newton_noise_scale(5000, 1, 0.1, 0.01, 1.0, 0.25, 1e-2) == pytest.approx(
        gamma / 0.1 * math.sqrt(2 * math.log(1.25 / 0.01)))
    with pytest.raises(ValueError):
        newton_noise_scale(5000, 0, 0.1, 0.01, 1.0, 0.25, 1e-2)


def test_lcodec_noise_at_the_authors_defaults():
    # their NoisyReturn at their scripts' setting: n = 50,000, m = 1, M = 0.25, L = 1, lambda = l2_reg = 0.01,
    # epsilon = 0.1, delta = 0.01: gamma = 2 * 0.25 / (0.01^3 * 5e4^2) = 2e-4, sigma = 2e-3 * sqrt(2 ln 125)
    assert newton_noise_scale(50_000, 1, 0.1, 0.01, 1.0, 0.25, 0.01) == pytest.approx(0.0062150, rel=1e-4)
    cfg = get_method("l-codec").config
    assert (cfg.epsilon, cfg.delta, cfg.lipschitz, cfg.hessian_lipschitz) == (0.1, 0.01, 1.0, 0.25)
    assert cfg.damping == TrainConfig().weight_decay  # their l2_reg is the training weight decay


def test_lcodec_noise_uses_the_original_training_set_size(env):
    result = run(env, "l-codec", selection="random", scrub_batch=8)
    expected = newton_noise_scale(len(env.forget) + len(env.retain), 1, 0.1, 0.01, 1.0, 0.25, 0.02)
    sigmas = [float(n.split("noise sigma ")[1].split(";")[0]) for n in result.notes if "noise sigma" in n]
    assert len(sigmas) == math.ceil(len(env.forget) / 8)
    assert sigmas == pytest.approx([expected] * len(sigmas), rel=1e-2)  # fixed n, as their orig_trainset_size


def test_lcodec_val_gap_skip_reverts_a_costly_step(env, monkeypatch):
    values = iter([50.0] + [10.0] * 100)  # the reference check, then every later check: a 40-point drop
    monkeypatch.setattr(env.task, "quick_evaluate", lambda model, examples: next(values))
    result = run(env, "l-codec", selection="random", scrub_batch=8, val_gap_skip=5.0)
    reverted = [n for n in result.notes if "reverted" in n]
    assert len(reverted) == math.ceil(len(env.forget) / 8)
    assert all(torch.equal(a, b) for a, b in zip(env.model.parameters(), result.model.parameters()))


@pytest.mark.parametrize("name", ["l-codec", "l-codec-f"])
def test_lcodec_newton_step_raises_forget_loss_on_whole_rows(env, name):
    before = mean_example_loss(env.model, env.task, env.forget)
    # rows chosen by gradient norm: the step then moves the loss by more than float32 rounding
    result = run(env, name, sigma=0.0, scrub_batch=len(env.forget), selection="gradient")
    assert mean_example_loss(result.model, env.task, env.forget) > before
    changed_rows = changed_biases = 0
    for (key, a), b in zip(env.model.named_parameters(), result.model.parameters()):
        diff = a != b
        if key.endswith(".weight") and a.dim() == 2:
            changed_rows += int(diff.any(1).sum())
        elif key.endswith(".bias"):
            changed_biases += int(diff.sum())
        else:
            assert not diff.any(), f"{name} changed {key}, which is not a linear layer's row"
    assert 0 < changed_rows <= 8 and changed_biases <= 8  # one scrub step, at most max_units rows


def test_ermktp_is_vision_only_and_checkpoint_compatible(env, tmp_path):
    from mdlib.pipeline.checkpoints import load_checkpoint, save_checkpoint

    result = run(env, "erm-ktp")
    model = result.model
    for prefix in ("text_encoder", "head", "mlm_head", "text_proj"):
        assert all(torch.equal(a, b) for a, b in zip(getattr(env.model, prefix).parameters(),
                                                    getattr(model, prefix).parameters())), prefix
    assert not torch.equal(model.image_encoder.vit.layers[0].mlp.fc1.weight,
                           env.model.image_encoder.vit.layers[0].mlp.fc1.weight)
    zeroed = (model.image_proj.weight == 0).all(0)
    assert 0 < int(zeroed.sum()) <= 0.1 * len(zeroed) + 1e-9
    for _, layer in image_consumers(model):
        assert (layer.weight[:, zeroed] == 0).all()
    loaded, _ = load_checkpoint(save_checkpoint(tmp_path / "erm.pt", model))
    batch = env.forget.batch(torch.arange(4))
    assert torch.allclose(env.task.example_loss(loaded, batch), env.task.example_loss(model.eval(), batch))


def test_ul_ascends_the_text_likelihood_on_the_text_side_only(env):
    before = mean_mlm_loss(env.model, env.task, env.forget, seed=0, mask_prob=0.15)
    result = run(env, "ul", lr=1e-3, epochs=3, stop_at_unseen=False)
    assert mean_mlm_loss(result.model, env.task, env.forget, seed=0, mask_prob=0.15) > before
    for key, a in env.model.state_dict().items():
        if not key.startswith(("text_encoder.", "mlm_head.")):
            assert torch.equal(a, result.model.state_dict()[key]), f"UL changed {key}"


def test_ul_takes_one_full_batch_step_per_epoch_as_jang_et_al(env, monkeypatch):
    cfg = get_method("ul").config
    assert (cfg.lr, cfg.weight_decay, cfg.grad_clip, cfg.epochs, cfg.full_batch) == (5e-5, 0.0, 0.0, 20, True)
    sizes = []
    mlm = env.task.mlm_loss

    def spy(model, batch, *args, **kwargs):
        if torch.is_grad_enabled():
            sizes.append(len(batch["unit"]))
        return mlm(model, batch, *args, **kwargs)

    monkeypatch.setattr(env.task, "mlm_loss", spy)
    result = run(env, "ul", epochs=3, stop_at_unseen=False, max_retain_drop=None, max_val_drop=None,
                 max_forget_loss=None)
    assert sizes == [len(env.forget)] * 3 and result.history[-1]["step"] == 3


def test_ul_f_ascends_the_pair_likelihood(env):
    p_before = env.task.true_probability(env.model, env.forget).mean()
    result = run(env, "ul-f", lr=1e-3, epochs=3, stop_at_unseen=False)
    assert env.task.true_probability(result.model, env.forget).mean() < p_before


@pytest.mark.parametrize("name, hparams, error, match", [
    ("retrain", dict(train_config={"epochs": 0}), ValueError, "epochs"),
    ("retrain", dict(train_config={"epoch": 3}), ValueError, "unknown TrainConfig field"),
    ("retrain", dict(train_config=[1, 2]), TypeError, "dict"),
    ("retrain", dict(lr=1e-3), ValueError, "unknown hyperparameter"),
    ("finetune", dict(lr=-1.0), ValueError, "lr must be positive"),
    ("finetune", dict(loss_options="p_hard"), TypeError, "loss_options"),
    ("neggrad", dict(objective="maximise"), ValueError, "objective"),
    ("neggrad", dict(max_retain_drop=-0.1), ValueError, "max_retain_drop"),
    ("dtd", dict(epsilon=0.0), ValueError, "epsilon"),
    ("dtd", dict(delta=2.0), ValueError, "delta"),
    ("dtd", dict(select="best"), ValueError, "last"),
    ("dtd", dict(weight_decay=0.0), ValueError, "strongly convex"),
    ("dtd-f", dict(smoothness=0.001), ValueError, "smoothness"),
    ("l-codec", dict(selection="magic"), ValueError, "selection"),
    ("l-codec", dict(n_perturbations=2), ValueError, "n_perturbations"),
    ("l-codec-f", dict(damping=0.0), ValueError, "damping"),
    ("l-codec", dict(val_gap_skip=-1.0), ValueError, "val_gap_skip"),
    ("erm-ktp", dict(mask_fraction=1.5), ValueError, "mask_fraction"),
    ("erm-ktp", dict(select="best"), ValueError, "last"),
    ("ul", dict(mask_prob=1.0), ValueError, "mask_prob"),
    ("ul-f", dict(epochs=0), ValueError, "epochs"),
])
def test_bad_hyperparameters_are_rejected(name, hparams, error, match):
    with pytest.raises(error, match=match):
        get_method(name, **hparams)


def test_bad_loss_options_fail_before_running(env):
    with pytest.raises(ValueError, match="loss_options"):
        run(env, "finetune", loss_options={"temperature": 2.0})
