"""The explorers: a plain figure in batch runs, a widget that reacts in a live kernel."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest

from mdlib import explore


def test_rates_at_counts_scores_at_or_above_the_threshold():
    members, non_members = np.array([0.1, 0.5, 0.9, 0.9]), np.array([0.0, 0.5, 0.2])
    assert explore.rates_at(members, non_members, 0.5) == (75.0, pytest.approx(100 / 3))
    assert explore.rates_at(members, non_members, 1.0) == (0.0, 0.0)
    assert explore.rates_at(members, non_members, -1.0) == (100.0, 100.0)
    with pytest.raises(ValueError, match="at least one member"):
        explore.rates_at([], non_members, 0.5)


def test_best_threshold_matches_a_search_over_every_score():
    from mdlib.attacks import best_threshold

    rng = np.random.default_rng(0)
    members, non_members = rng.integers(0, 30, 200) / 10 + 0.5, rng.integers(0, 30, 150) / 10  # many ties
    candidates = np.unique(np.r_[members, non_members])
    gaps = [np.subtract(*explore.rates_at(members, non_members, t)) for t in candidates]
    best = best_threshold(members, non_members)
    assert best in candidates and np.subtract(*explore.rates_at(members, non_members, best)) == pytest.approx(max(gaps))
    assert best == candidates[np.flatnonzero(np.isclose(gaps, max(gaps)))].max()  # ties: the largest


def test_threshold_explorer_draws_the_best_threshold_once_in_batch(monkeypatch):
    monkeypatch.setenv("MDLIB_BATCH", "1")
    plt.close("all")
    fig = explore.threshold_explorer([0.8, 0.9, 0.95], [0.1, 0.2, 0.85], labels=("in", "out"))
    assert isinstance(fig, plt.Figure) and not plt.get_fignums()  # returned closed: drawn once, as the cell's value
    title = fig.axes[0].get_title()
    assert "TPR 100.0%" in title and "FPR 33.3%" in title  # threshold 0.8 separates best (gap 66.7)


def test_threshold_explorer_widget_reacts_to_the_slider(monkeypatch):
    pytest.importorskip("ipywidgets")
    monkeypatch.setattr(explore, "is_interactive", lambda: True)
    shown = []
    monkeypatch.setattr(explore, "_draw_threshold", lambda m, n, t, labels, xlabel: shown.append(t) or plt.figure())
    box = explore.threshold_explorer([0.8, 0.9], [0.1, 0.2])
    slider = box.children[0]
    assert shown == [pytest.approx(0.8)] and slider.value == pytest.approx(0.8)
    slider.value = 0.15
    assert shown[-1] == pytest.approx(0.15)
    plt.close("all")


def test_pair_explorer_static_and_widget(monkeypatch, fast_task, trained_fast_model):
    forget, _ = fast_task.forget_split(6, seed=0)
    models = {"f": trained_fast_model}
    monkeypatch.setenv("MDLIB_BATCH", "1")
    fig = explore.pair_explorer(fast_task, models, forget, n_choices=3)
    assert isinstance(fig, plt.Figure) and "image rank" in " ".join(t.get_text() for t in fig.axes[1].texts)
    pytest.importorskip("ipywidgets")
    monkeypatch.setattr(explore, "is_interactive", lambda: True)
    drawn = []
    real = explore._draw_pair
    monkeypatch.setattr(explore, "_draw_pair", lambda *a: drawn.append(a[3]) or real(*a))
    box = explore.pair_explorer(fast_task, models, forget, n_choices=3)
    pick = box.children[0]
    assert len(pick.options) == 3 and drawn == [0]
    pick.value = 2
    assert drawn == [0, 2]
    plt.close("all")
