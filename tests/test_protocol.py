"""The tuning/evaluation protocol of Table 1 and the claims module that reads its numbers."""
from __future__ import annotations

import copy
import json

import numpy as np
import pandas as pd
import pytest
import torch

from mdlib import claims, plots
from mdlib.methods import available, get_method
from mdlib.pipeline import protocol


# -- requests and grids ----------------------------------------------------------------------------------
def test_tuning_request_is_disjoint_from_every_reserved_evaluation_request(fast_task):
    tune_f, tune_r = protocol.tuning_request(fast_task, 0.05)
    assert np.intersect1d(tune_f.units(), tune_r.units()).size == 0
    for seed in range(protocol.RESERVED_SEEDS):
        eval_f, _ = protocol.evaluation_request(fast_task, 0.05, seed)
        assert len(eval_f.units()) == len(tune_f.units())  # the same size
        assert np.intersect1d(eval_f.units(), tune_f.units()).size == 0
    again, _ = protocol.tuning_request(fast_task, 0.05)
    assert again.units().tolist() == tune_f.units().tolist()  # drawn once per task, the same every time


def test_a_forget_set_too_large_for_a_separate_tuning_request_is_refused(fast_task):
    with pytest.raises(ValueError, match="too large for a tuning request"):
        protocol.tuning_request(fast_task, 0.45)


def test_every_method_gets_the_same_number_of_distinct_valid_settings():
    methods = [m for m in available() if not m.startswith("retrain")]
    assert set(m.removesuffix("-f") for m in methods) == set(protocol.GRIDS)
    for m in methods:
        settings = protocol.grid(m)
        assert len(settings) == protocol.GRID_POINTS, m
        assert len({json.dumps(s, sort_keys=True) for s in settings}) == protocol.GRID_POINTS, m
        for s in settings:
            method = get_method(m, **s)  # no task: the protocol never applies a task's hand-tuned defaults
            assert getattr(method.config, "select", "last") == "last", m  # the final model is reported
        # fast mode: the grid's corners, distinct, the same number for every method
        corners = protocol.grid(m, fast=True)
        assert corners == [settings[0], settings[-1]], m
        assert len({json.dumps(s, sort_keys=True) for s in corners}) == protocol.FAST_GRID_POINTS, m
    # a "-F" variant scales its own default learning rate
    assert protocol.grid("multidelete-f")[0]["lr"] == get_method("multidelete-f").config.lr
    with pytest.raises(ValueError, match="no grid"):
        protocol.grid("retrain")


# -- the protocol on the fast retrieval model ----------------------------------------------------------
@pytest.fixture
def stand_in_retrain(monkeypatch):
    """Retrain replaced by a noisy copy of the original (cheap): the protocol's mechanics do not depend on
    what Retrain is, and a test can swap in another one to show that the choice never reads it."""
    noise = {"scale": 0.02}

    def fake(task, retain, seed=0, *, fast=False, device="auto", progress=True, **_):
        from mdlib.pipeline.original import original_model

        model, _ = original_model(task, 0, fast=True, progress=False)
        other = copy.deepcopy(model)
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in other.parameters():
                p.add_(noise["scale"] * torch.randn(p.shape, generator=g))
        return other.eval(), {"seconds": 100.0}

    monkeypatch.setattr(protocol, "retrained_model", fake)
    return noise


def test_the_protocol_reports_each_methods_own_final_model_and_caches_its_runs(
        fast_task, trained_fast_model, stand_in_retrain, tmp_path, monkeypatch):
    cache = protocol.RunCache(tmp_path / "runs")
    table = protocol.run(fast_task, ["neggrad-f"], seeds=[0], size=0.05, fast=True, cache=cache, attack=False,
                         progress=False)
    tuning = table.tuning[table.tuning["method"] == "neggrad-f"]
    assert len(tuning) == protocol.FAST_GRID_POINTS and tuning["chosen"].sum() == 1
    assert [json.loads(s) for s in tuning["setting"]] == protocol.grid("neggrad-f", fast=True)
    original_utility = table.tuning.set_index("method").loc["original", "val_utility"]
    kept = tuning[tuning["val_utility"] >= original_utility - protocol.COLLAPSE_DROP]
    assert tuning.loc[tuning["chosen"], "selection"].item() == (kept if len(kept) else tuning)["selection"].max()
    # the selection rule: validation utility minus the two-sided gap between D_f and never-seen data
    np.testing.assert_allclose(tuning["selection"], tuning["val_utility"] - (tuning["d_f"] - tuning["d_val"]).abs())
    row = table.evaluation.set_index("method").loc["neggrad-f"]
    assert row["changed"] == 1.0  # the method's output, never the original's weights
    assert json.loads(row["setting"]) == table.chosen["neggrad-f"]
    original = table.evaluation.set_index("method").loc["original"]
    assert row["d_f"] != original["d_f"]
    assert set(table.evaluation["method"]) == {"original", "retrain", "neggrad-f"}
    floor = table.noise_floor.set_index("seed")
    assert list(floor.index) == [0]  # a second Retrain for the first evaluation seed
    assert floor.loc[0, "retrain_noise_floor"] == pytest.approx(
        abs(floor.loc[0, "retrain_d_f"] - floor.loc[0, "second_retrain_d_f"]))
    assert floor.loc[0, "retrain_noise_floor"] > 0  # two Retrains of different seeds differ

    calls = []
    real_run_once = protocol._run_once
    monkeypatch.setattr(protocol, "_run_once", lambda *a, **k: calls.append(a[1]) or real_run_once(*a, **k))
    again = protocol.run(fast_task, ["neggrad-f"], seeds=[0], size=0.05, fast=True, cache=cache, attack=False,
                         progress=False)
    assert calls == []  # every run came from the cache
    pd.testing.assert_frame_equal(again.evaluation, table.evaluation)
    # other notebooks read the chosen settings alone, from the same cache
    assert protocol.chosen_settings(fast_task, ["neggrad-f", "retrain"], size=0.05, fast=True, cache=cache,
                                    progress=False) == table.chosen and calls == []

    # the choice never reads Retrain: another Retrain changes the scores against it, not the chosen setting
    stand_in_retrain["scale"] = 0.05
    other = protocol.run(fast_task, ["neggrad-f"], seeds=[0], size=0.05, fast=True,
                         cache=protocol.RunCache(tmp_path / "other"), attack=False, progress=False)
    assert other.chosen == table.chosen
    assert not np.isclose(other.evaluation.set_index("method").loc["neggrad-f", "dist_retrain"],
                          row["dist_retrain"])


def test_the_choice_passes_over_a_destroyed_model_unless_every_setting_destroyed_it():
    """A model whose validation utility fell more than COLLAPSE_DROP below the original's places D_f like
    never-seen data (gap near 0): it wins on `selection` alone, and `choose` passes it over."""
    def run(point, utility, gap):
        return {"point": point, "val_utility": utility, "selection": utility - gap}

    destroyed, mild, milder = run(0, 69.0, 5.0), run(1, 87.0, 27.0), run(2, 86.0, 27.0)
    assert destroyed["selection"] > mild["selection"] > milder["selection"]
    assert protocol.choose([destroyed, mild, milder], original_utility=88.0) is mild
    assert protocol.choose([destroyed, run(1, 70.0, 20.0)], original_utility=88.0) is destroyed  # all destroyed
    assert protocol.choose([run(0, 87.0, 1.0), run(1, 87.0, 1.0)], original_utility=88.0)["point"] == 0  # a tie


def test_bad_protocol_arguments_are_refused_before_any_work(fast_task, tmp_path, monkeypatch):
    monkeypatch.setattr(protocol, "original_model", lambda *a, **k: pytest.fail("no work may start"))
    with pytest.raises(ValueError, match="unknown method|no grid"):
        protocol.run(fast_task, ["multidelet"], seeds=[0], cache=protocol.RunCache(tmp_path))
    with pytest.raises(ValueError, match="seeds 0 to"):
        protocol.run(fast_task, ["multidelete"], seeds=[7], cache=protocol.RunCache(tmp_path))


def test_erm_ktp_is_not_run_on_graphs_and_says_so():
    from types import SimpleNamespace

    graphs = SimpleNamespace(name="graph-text", variable_image_tokens=True)
    assert not protocol.applicable("erm-ktp", graphs)
    assert protocol.applicable("multidelete", graphs)
    notes = {}
    assert protocol._runnable(["erm-ktp", "multidelete"], graphs, notes) == ["multidelete"]
    assert list(notes) == ["erm-ktp"] and "not defined on graph-text" in notes["erm-ktp"][0]


def test_tradeoff_figure_marks_every_grid_point_and_the_chosen_one():
    tuning = pd.DataFrame({"method": ["original", "retrain"] + ["neggrad"] * 4 + ["multidelete"] * 4,
                           "test_dist_retrain": [10, 0, 1, 2, 3, 4, -1, -2, 0.5, 5],
                           "test_d_test": [60, 59, 58, 57, 50, 40, 59, 58, 57, 30],
                           "chosen": [False, False, True, False, False, False, False, True, False, False]})
    fig = plots.tradeoff(tuning)
    ax = fig.axes[0]
    points = sum(len(c.get_offsets()) for c in ax.collections)
    assert points == 10 + 2  # every run once, plus a ring on each chosen setting
    rings = [c for c in ax.collections if len(c.get_offsets()) and c.get_sizes()[0] == 110]
    ringed = sorted(tuple(xy) for c in rings for xy in np.asarray(c.get_offsets()))
    assert ringed == [(-2.0, 58.0), (1.0, 58.0)]  # the chosen points themselves, not just two rings


# -- claims ---------------------------------------------------------------------------------------------
def _results(values: dict[tuple[str, str], list[float]], notebook="06_baselines", task="retrieval") -> pd.DataFrame:
    rows = []
    for (method, metric), vs in values.items():
        for seed, v in enumerate(vs):
            rows.append(dict(notebook=notebook, task=task, method=method, seed=seed, df_size=10, metric=metric,
                             value=v))
    return pd.DataFrame(rows)


def test_a_claim_holds_fails_or_sits_within_noise():
    clear = _results({("multidelete", "d_f"): [30, 31, 29], ("neggrad", "d_f"): [45, 46, 44]})
    noisy = _results({("multidelete", "d_f"): [30, 40, 35], ("neggrad", "d_f"): [36, 41, 31]})
    wrong = _results({("multidelete", "d_f"): [45, 46, 44], ("neggrad", "d_f"): [30, 31, 29]})
    verdict = {name: claims.decide(df, only="table1_d_f")["verdict"].item()
               for name, df in (("clear", clear), ("noisy", noisy), ("wrong", wrong))}
    assert verdict == {"clear": "holds", "noisy": "within noise", "wrong": "does not hold"}


def test_collapsed_baselines_are_not_ranked_on_the_mi_ratio():
    df = _results({("multidelete", "mi_ratio"): [1.5, 1.6, 1.4], ("dtd", "mi_ratio"): [50, 60, 70],
                   ("dtd", "collapsed"): [1, 1, 1], ("neggrad", "mi_ratio"): [1.0, 1.1, 0.9],
                   ("neggrad", "collapsed"): [0, 0, 0]})
    row = claims.decide(df, only="table3_mi_ratio").iloc[0]
    assert row["verdict"] == "holds" and "collapsed, not ranked: dtd" in row["evidence"]


def test_claims_without_numbers_are_not_measured():
    out = claims.decide(_results({("multidelete", "d_f"): [30]}))
    assert (out.loc[out["id"] == "ablation_md", "verdict"] == "not measured").all()
    assert out.loc[out["id"] == "table1_d_f", "verdict"].item() == "not measured"  # no baseline


def test_oracle_check_compares_the_choice_with_the_point_closest_to_retrain():
    tuning = pd.DataFrame({"method": ["original", "retrain"] + ["m"] * 3, "point": [-1, -1, 0, 1, 2],
                           "setting": ["", "", "a", "b", "c"], "chosen": [False, False, True, False, False],
                           "test_d_test": [80.0, 80.0, 79.0, 50.0, 78.0],
                           "test_abs_dist_retrain": [20.0, 0.0, 5.0, 1.0, 3.0]})
    table = protocol.Table1("retrieval", 10, tuning, pd.DataFrame(), {}, pd.DataFrame())
    row = table.oracle_check().loc["m"]
    # "b" is closest but collapsed (D_test 30 points below the original's): the oracle takes "c"
    assert row["oracle"] == "c" and row["chosen"] == "a" and not row["agrees"]


def test_collapse_is_measured_against_the_original_not_retrain():
    """A method that loses 11 points against f has collapsed, even if Retrain is itself 5 points above f; one
    that ends 12 points below Retrain but 7 below f has not."""
    flags = protocol.mark_collapsed(d_test=[74.0, 78.0, 85.0, 60.0], original_d_test=[85.0, 85.0, 85.0, 85.0],
                                    is_method=[True, True, True, False])
    assert flags.tolist() == [1.0, 0.0, 0.0, 0.0]
