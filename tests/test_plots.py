"""Every plot function returns a Figure on small inputs (Agg backend, nothing shown)."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from mdlib import plots  # noqa: E402

RNG = np.random.default_rng(0)
IMAGES = RNG.integers(0, 256, size=(6, 8, 8, 3), dtype=np.uint8)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def long_table():
    rows = [{"task": t, "method": m, "seed": s, "df_size": n, "metric": "seconds", "value": v * n / 100 + s}
            for t in ("retrieval",) for m, v in [("retrain", 50.0), ("multidelete", 3.0), ("multidelete-f", 2.0)]
            for s in (0, 1) for n in (100, 200)]
    return pd.DataFrame(rows)


def test_example_grid_and_image_conversion():
    fig = plots.example_grid(IMAGES, [f"a red circle number {i}" for i in range(6)], ncols=4)
    assert isinstance(fig, Figure) and "6 examples" in fig._suptitle.get_text()
    bank = torch.rand(2, 3, 8, 8) * 2 - 1  # the task's image bank format
    assert plots.as_images(bank).shape == (2, 8, 8, 3)
    with pytest.raises(ValueError, match="captions"):
        plots.example_grid(IMAGES, ["only one"])


def test_training_curves():
    history = [{"epoch": e, "loss": 1 / e, "seconds": e, "val_d_test": 50 + e if e % 2 == 0 else None}
               for e in range(1, 5)]
    fig = plots.training_curves(history)
    assert isinstance(fig, Figure) and "loss 0.25" in fig._suptitle.get_text()
    assert len(fig.axes) == 2


def test_retrieval_examples_and_confusion():
    fig = plots.retrieval_examples(IMAGES, ["query one", "query two"], np.array([[0, 1, 2], [3, 4, 5]]), [1, 0])
    assert isinstance(fig, Figure) and "1/2 queries" in fig._suptitle.get_text()
    fig = plots.match_confusion(np.array([0.9, 0.8, 0.3]), np.array([0.1, 0.6]))
    assert isinstance(fig, Figure) and "60.0%" in fig.axes[0].get_title()


def test_histograms_and_metric_curves():
    fig = plots.probability_histograms({"D_f": RNG.random(20), "D_r": torch.rand(30)}, title="before")
    assert isinstance(fig, Figure) and fig.axes[0].get_title().startswith("before")
    history = [{"step": s, "d_f": 50 - 5 * s, "val_d_test": 90 - 0.1 * s} for s in range(5)]
    fig = plots.metric_curves(history, references={"val_d_test": {"original": 90.0}}, best_step=3)
    assert isinstance(fig, Figure) and "d_f 35.0" in fig._suptitle.get_text()


def test_method_bars_roc_and_time():
    df = long_table()
    fig = plots.method_bars(df, "seconds")
    assert isinstance(fig, Figure) and "retrain" in fig.axes[0].get_title()
    fig = plots.method_bars(df.assign(task=np.where(df.seed == 0, "retrieval", "nlvr")), "seconds", reference=10.0)
    assert isinstance(fig, Figure)
    fpr = np.linspace(0, 1, 11)
    fig = plots.roc_curves({"multidelete": (fpr, np.sqrt(fpr)), "retrain": (fpr, fpr)})
    assert isinstance(fig, Figure) and "multidelete" in fig.axes[0].get_title()
    fig = plots.time_vs_size(df)
    assert isinstance(fig, Figure) and "retrain" in fig.axes[0].get_title()
    assert plots.method_colors(["multidelete", "multidelete-f", "mystery"])["multidelete"] != \
        plots.method_colors(["multidelete-f"])["multidelete-f"]
