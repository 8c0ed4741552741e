"""Privacy evaluation: attack features, the MI ratio, LiRA with reference models, Retrain-referenced
forgetting and unimodal probes, on a planted case where a tiny model memorises a small set S."""
from __future__ import annotations

import copy
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from mdlib import attacks
from mdlib.attacks import (LiRA, MembershipClassifier, attack_features, attack_report, feature_names, forget_gap,
                           forget_quality, mi_ratio, reference_models, reference_splits, sample_units, true_logodds)
from mdlib.data.examples import ExampleSet, concat
from mdlib.models import MultimodalModel
from mdlib.probes import UnimodalProbe, probe_labels
from mdlib.tasks import load_task
from mdlib.training import TrainConfig, train

TINY = dict(hidden=32, intermediate=64, image_layers=1, text_layers=1, fusion_layers=1, heads=2, embed_dim=32)
N_UNITS = 30  # units in each of S (memorised), E (also trained on), X (B's other half), N (never trained on)
# many epochs on 60 examples: the tiny model memorises its training statements (about 10 s a model)
PLANTED_TRAIN = TrainConfig(epochs=150, batch_size=60, lr=5e-3, warmup_steps=5, eval_every=1000, mlm_weight=0.0,
                            one_per_unit=False)


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """Model A trained on S and E (memorises S), model B on E and X (never saw S or N), and two
    reference models on complementary halves of S, E, X and N (cached in a temporary data folder).

    One statement per image, with a random label (a "canary"): only memorising it predicts it, so
    an unseen statement is a coin toss for every model and a seen one is not.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    task = load_task("entailment", fast=True)
    for aux in ("itc_weight", "match_weight", "fused_mlm_weight"):  # the statements' cross-entropy only:
        if hasattr(task, aux):  # faster, and all there is to memorise
            setattr(task, aux, 0.0)
    config = task.model_config(**TINY)
    g = torch.Generator().manual_seed(0)
    one = task.train.subset(task.train.one_per_unit(g).sort().values, "one per image")
    units = one.units()[torch.randperm(len(one), generator=g).numpy()[:4 * N_UNITS]]
    S, E, X, N = (np.sort(units[i * N_UNITS:(i + 1) * N_UNITS]) for i in range(4))
    population = one.with_units(units, "population")
    random_labels = torch.randint(0, task.n_classes, (len(population),), generator=g)
    population = ExampleSet(dict(population.fields, label=random_labels), population.banks, name="population")

    def fit(units):
        torch.manual_seed(0)
        model = MultimodalModel(config)
        train(model, task, population.with_units(units), PLANTED_TRAIN, seed=0, progress=False)
        return model.eval()

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MDLIB_DATA", str(tmp_path_factory.mktemp("mdlib_data")))
        refs = reference_models(task, 2, seed=0, population=population, train_config=PLANTED_TRAIN,
                                model_config=config, device="cpu", progress=False)
        again = reference_models(task, 2, seed=0, population=population, train_config=PLANTED_TRAIN,
                                 model_config=config, device="cpu", progress=False)
    yield SimpleNamespace(task=task, A=fit(np.r_[S, E]), B=fit(np.r_[E, X]), refs=refs, refs_again=again,
                          S=population.with_units(S, "S"), E=population.with_units(E, "E"),
                          N=population.with_units(N, "N"), population=population)
    torch.set_num_threads(threads)


# -- features -------------------------------------------------------------------------------
def test_attack_features_shape_and_determinism(planted):
    x = attack_features(planted.A, planted.task, planted.S)
    assert x.shape == (len(planted.S), len(feature_names(planted.task))) == (N_UNITS, 2)
    assert np.array_equal(x, attack_features(planted.A, planted.task, planted.S))
    assert np.isfinite(x).all()
    # column 0 is the log-odds of the ground truth (the attacks rank by it, not by its rounded probability)
    np.testing.assert_allclose(x[:, 0], true_logodds(planted.A, planted.task, planted.S))
    # for a classification task the loss is the cross-entropy of the ground truth, log(1 + exp(-log-odds))
    np.testing.assert_allclose(x[:, 1], np.logaddexp(0, -x[:, 0]), rtol=1e-4, atol=1e-5)


def test_logodds_stays_finite_where_the_probability_rounds_to_one(planted):
    model = copy.deepcopy(planted.A)
    with torch.no_grad():
        model.head[-1].weight.mul_(1e3)
    phi = true_logodds(model, planted.task, planted.S)
    p = planted.task.true_probability(model, planted.S)
    assert np.isfinite(phi).all()
    assert (p == 1.0).any() and (phi[p == 1.0] > 20).all()


def test_retrieval_features_include_the_contrastive_logit():
    task = load_task("retrieval", fast=True)
    torch.manual_seed(0)
    model = task.build_model(task.model_config(**TINY)).eval()
    examples = task.test.subset(torch.arange(70))  # one full batch of 64 and a wrapped-around one
    x = attack_features(model, task, examples)
    assert feature_names(task) == ["true_logodds", "loss", "contrastive_logit"] and x.shape == (70, 3)
    scale = model.temperature_scale().item()
    assert (np.abs(x[:, 2]) <= scale + 1e-4).all() and x[:, 2].std() > 0
    # the loss of an example does not depend on how many examples share its set
    np.testing.assert_allclose(attack_features(model, task, examples.subset(torch.arange(64)))[:, 1], x[:64, 1],
                               rtol=1e-5)


# -- the paper's MI ratio ----------------------------------------------------------------------
def test_mi_ratio_detects_forgetting_and_is_one_for_the_same_model(planted):
    clf = MembershipClassifier.fit(planted.A, planted.task, planted.E, planted.N, seed=0)
    again = MembershipClassifier.fit(planted.A, planted.task, planted.E, planted.N, seed=0)
    assert clf.val_auc == again.val_auc and clf.val_auc > 60
    p_a = clf.member_probability(planted.A, planted.task, planted.S)
    assert np.array_equal(p_a, again.member_probability(planted.A, planted.task, planted.S))
    p_b = clf.member_probability(planted.B, planted.task, planted.S)
    assert mi_ratio(p_a, p_a) == 1.0
    assert mi_ratio(p_a, clf.member_probability(copy.deepcopy(planted.A), planted.task, planted.S)) == 1.0
    assert mi_ratio(p_a, p_b) > 1.2  # S dropped to the level of data B never saw
    mlp = MembershipClassifier.fit(planted.A, planted.task, planted.E, planted.N, seed=0, classifier="mlp")
    assert mlp.val_auc > 60  # the MLP attack also tells members from non-members
    assert mi_ratio(mlp.member_probability(planted.A, planted.task, planted.S),
                    mlp.member_probability(planted.B, planted.task, planted.S)) > 1.2
    with pytest.raises(ValueError, match="unknown attack classifier"):
        MembershipClassifier.fit(planted.A, planted.task, planted.E, planted.N, classifier="svm")
    with pytest.raises(ValueError, match="both members and non-members"):
        MembershipClassifier.fit(planted.A, planted.task, planted.E, planted.E)


def test_sample_units_keeps_units_whole():
    task = load_task("retrieval", fast=True)
    sample = sample_units(task.train, 100, seed=3)
    assert len(sample) >= 100
    per_unit = np.bincount(task.train.fields["unit"].numpy())
    kept = sample.fields["unit"].numpy()
    assert all((kept == u).sum() == per_unit[u] for u in np.unique(kept))  # every caption of a drawn image
    assert np.array_equal(sample.units(), sample_units(task.train, 100, seed=3).units())
    assert not np.array_equal(sample.units(), sample_units(task.train, 100, seed=4).units())


# -- LiRA ----------------------------------------------------------------------------------------
def test_reference_splits_are_balanced_and_seeded():
    units = np.arange(11)
    mask = reference_splits(units, 6, seed=0)
    assert mask.shape == (6, 11) and (mask.sum(0) == 3).all()  # every unit IN for exactly K/2 models
    assert np.array_equal(mask, reference_splits(units, 6, seed=0))
    assert not np.array_equal(mask, reference_splits(units, 6, seed=1))
    with pytest.raises(ValueError, match="even"):
        reference_splits(units, 3, seed=0)


def test_reference_models_are_cached_and_cover_every_unit(planted):
    refs, again = planted.refs, planted.refs_again
    assert len(refs) == 2 and (refs.in_mask.sum(0) == 1).all()
    for a, b in zip(refs.models, again.models):  # the second call loaded the checkpoints
        assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    inside = refs.trained_on(planted.S)
    assert inside.shape == (2, len(planted.S)) and (inside.sum(0) == 1).all()
    with pytest.raises(ValueError, match="outside the reference models' population"):
        refs.trained_on(planted.task.test)


def test_lira_from_confidences_on_gaussians():
    rng = np.random.default_rng(0)
    k, n = 16, 400
    inside = reference_splits(np.arange(n), k, seed=0)
    difficulty = rng.normal(0, 3, n)  # per-example offsets that a global threshold cannot see
    conf = difficulty + 2.0 * inside + rng.normal(0, 0.5, (k, n))
    for mode in ("online", "offline"):
        for fix in (True, False):
            lira = LiRA.from_confidences(conf, inside, mode=mode, fix_variance=fix)
            member = difficulty + 2.0 + rng.normal(0, 0.5, n)
            non = difficulty + rng.normal(0, 0.5, n)
            report = attack_report(lira.score_confidences(member), lira.score_confidences(non))
            assert report["auc"] > 90, (mode, fix, report)
    # without per-example calibration the offsets drown the signal
    assert attack_report(member, non)["auc"] < 80
    with pytest.raises(ValueError, match="OUT reference models"):
        LiRA.from_confidences(conf[:1], np.ones((1, n), dtype=bool))


def test_lira_detects_the_memorised_set_and_not_an_unseen_one(planted):
    targets = concat([planted.S, planted.N], "S and N")
    n = len(planted.S)
    lira = LiRA.fit(planted.refs, planted.task, targets)
    a, b = lira.score(planted.A, planted.task, targets), lira.score(planted.B, planted.task, targets)
    assert np.array_equal(a, LiRA.fit(planted.refs, planted.task, targets).score(planted.A, planted.task, targets))
    auc_a, auc_b = attack_report(a[:n], a[n:])["auc"], attack_report(b[:n], b[n:])["auc"]
    assert auc_a > 75, auc_a  # A memorised S (84 here)
    assert 30 < auc_b < 70, auc_b  # B never saw S: S looks like N
    offline = LiRA.fit(planted.refs, planted.task, targets, mode="offline").score(planted.A, planted.task, targets)
    assert attack_report(offline[:n], offline[n:])["auc"] > 55  # one OUT model per example here: weaker
    with pytest.raises(ValueError, match="fitted on"):
        lira.score(planted.A, planted.task, planted.S)


def test_attack_report_and_tpr_at_low_fpr():
    members, non = np.arange(1000, 1100.0), np.arange(0, 1000.0)
    report = attack_report(members, non)
    assert report["auc"] == 100 and report["tpr_at_1fpr"] == 100 and report["tpr_at_01fpr"] == 100
    assert report["min_fpr"] == pytest.approx(0.1)
    overlap = attack_report(np.arange(1000.0), np.arange(1000.0))
    assert overlap["auc"] == 50 and overlap["tpr_at_1fpr"] <= 1.0 + 1e-9
    with pytest.raises(ValueError, match="finite"):
        attack_report([np.inf], [0.0])


# -- Retrain-referenced forgetting -----------------------------------------------------------
def test_forget_gap_and_quality():
    rng = np.random.default_rng(0)
    a = rng.normal(0, 1, 300)
    assert forget_gap(30.0, 45.0) == -15.0
    assert forget_quality(a, a) > 0.99
    assert forget_quality(a, rng.normal(0, 1, 300)) > 0.05
    assert forget_quality(a, a + 1.0) < 1e-6


# -- unimodal probes ---------------------------------------------------------------------------
def test_probe_accuracy_unchanged_for_an_identical_model(planted):
    labels = probe_labels(planted.task, planted.population)
    probe = UnimodalProbe.fit(planted.A, planted.task, planted.population, labels)
    first = probe.accuracy(planted.A, planted.task, planted.population, labels)
    assert probe.accuracy(copy.deepcopy(planted.A), planted.task, planted.population, labels) == first
    assert first["probe_acc"] > 100 / len(np.unique(labels))  # better than chance on what it was fitted on


def test_probe_labels_for_graph_text_and_a_clear_error_elsewhere():
    pytest.importorskip("torch_geometric")
    task = load_task("graph-text", fast=True)
    organ = probe_labels(task, task.train)
    assert set(organ) == {"ear", "eye"} and len(organ) == len(task.train)
    branch = probe_labels(task, task.train, "branch")
    assert all(b.startswith("abnormal e") for b in branch)
    for i in range(0, len(task.train), 97):  # the branch names the organ
        assert organ[i] in branch[i]
    with pytest.raises(ValueError, match="no probe labels"):
        probe_labels(SimpleNamespace(name="custom"), task.train)


def test_public_api():
    assert set(attacks.__all__) >= {"attack_features", "MembershipClassifier", "mi_ratio", "LiRA", "reference_models",
                                    "attack_report", "forget_gap", "forget_quality"}


def test_mi_ratio_is_infinite_with_a_warning_when_no_example_looks_like_a_member():
    from mdlib.attacks import mi_ratio

    assert mi_ratio([0.6, 0.8], [0.35, 0.35]) == pytest.approx(2.0)
    with pytest.warns(UserWarning, match="infinite"):
        assert mi_ratio([0.6, 0.8], [0.0, 0.0]) == float("inf")
    with pytest.raises(ValueError):
        mi_ratio([], [0.5])
