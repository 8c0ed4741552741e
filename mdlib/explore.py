"""Interactive exploration with ipywidgets; static output in batch runs (papermill, nbval, CI).

    explore.pair_explorer(task, {"f": model, "MultiDelete": md.model}, forget)
    explore.curve_explorer({"multidelete": md.history, "neggrad": ng.history})
    explore.threshold_explorer(scores_of_members, scores_of_non_members)

In JupyterLab or Colab each returns a widget: pick a pair (or a method) from a drop-down, or move
a threshold with a slider, and see the result. When no one can click (the `CI` or `MDLIB_BATCH`
environment variable is set, or ipywidgets is missing) they return the first choice as a plain
figure instead (closed, so a notebook shows it once), and an executed notebook still shows something.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .attacks.evaluation import best_threshold
from .data.examples import ExampleSet
from .plots import as_images, metric_curves
from .utils import is_batch


def is_interactive() -> bool:
    """True in a live notebook; False in batch runs (CI / MDLIB_BATCH set) or without ipywidgets."""
    if is_batch():
        return False
    try:
        import ipywidgets  # noqa: F401
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and hasattr(shell, "kernel")  # a notebook kernel, not a plain IPython terminal


def _static(fig):
    """A figure returned as a cell's value: closed, so the inline backend does not draw it a second time."""
    import matplotlib.pyplot as plt

    plt.close(fig)
    return fig


def _live(control, draw, first):
    """A widget: `control` (a drop-down or a slider) above an output that shows the figure `draw(value)` for
    the control's value, redrawn whenever it changes; `first` is drawn at once."""
    import ipywidgets as widgets
    import matplotlib.pyplot as plt
    from IPython.display import display

    out = widgets.Output()

    def show(value):
        out.clear_output(wait=True)
        with out:
            fig = draw(value)
            display(fig)
            plt.close(fig)

    control.observe(lambda change: show(change["new"]), names="value")
    show(first)
    return widgets.VBox([control, out])


def _pair_table(task, models: dict, examples: ExampleSet) -> pd.DataFrame:
    """P(ground truth) of each example under each model, and for retrieval the rank of its image."""
    table = pd.DataFrame({"unit": examples.fields["unit"].numpy()})
    for name, model in models.items():
        table[f"P {name}"] = task.true_probability(model, examples)
        if task.name == "retrieval":
            table[f"rank {name}"] = task.ranks(model, examples)["image_rank"] + 1
    return table


def _draw_pair(task, examples: ExampleSet, table: pd.DataFrame, i: int, models: list[str]):
    import matplotlib.pyplot as plt

    fig, (ax_img, ax_bar) = plt.subplots(1, 2, figsize=(9, 3.2), gridspec_kw={"width_ratios": [1, 2]})
    text = task.tokenizer.decode(examples.fields["input_ids"][i], skip_special_tokens=True)
    if task.name != "graph-text" and "image_index" in examples.fields:
        idx = examples.fields["image_index"][i].reshape(-1)[:1]  # the first image (NLVR pairs show the left one)
        ax_img.imshow(as_images(examples.banks["image"][idx])[0])
    ax_img.axis("off")
    probs = [table.loc[i, f"P {m}"] for m in models]
    ax_bar.barh(models, probs, color="tab:red")
    ax_bar.set_xlim(0, 1)
    ax_bar.set_xlabel("P(ground truth)")
    if task.name == "retrieval":
        for y, m in enumerate(models):
            ax_bar.text(min(probs[y] + 0.02, 0.8), y, f"image rank {int(table.loc[i, f'rank {m}'])}", va="center")
    import textwrap

    fig.suptitle("\n".join(textwrap.wrap(text, 90)), fontsize=9)
    fig.tight_layout()
    return fig


def pair_explorer(task, models: dict, examples: ExampleSet, n_choices: int = 30):
    """Pick one of the first `n_choices` examples; see its image, text, P(ground truth) and (retrieval)
    the rank of its image among `examples`' images, under each model in `models` (name -> model)."""
    n = min(n_choices, len(examples))
    if n == 0:
        raise ValueError("no examples to explore")
    sub = examples.subset(np.arange(n)) if task.name != "retrieval" else examples
    table = _pair_table(task, models, sub)
    names = list(models)
    if not is_interactive():
        return _static(_draw_pair(task, sub, table, 0, names))
    import ipywidgets as widgets

    options = [(f"{task.unit_name} {int(table.loc[i, 'unit'])}, example {i}", i) for i in range(n)]
    pick = widgets.Dropdown(options=options, description="example")
    return _live(pick, lambda i: _draw_pair(task, sub, table, i, names), 0)


def curve_explorer(histories: dict[str, list[dict]], keys=("d_f", "p_retain", "val_d_test")):
    """Pick a method; see its D_f score, retained probability and validation metric over steps."""
    if not histories:
        raise ValueError("no histories to explore")
    names = list(histories)
    if not is_interactive():
        return _static(metric_curves(histories[names[0]], keys=keys, title=names[0]))
    import ipywidgets as widgets

    pick = widgets.Dropdown(options=names, description="method")
    return _live(pick, lambda name: metric_curves(histories[name], keys=keys, title=name), names[0])


def rates_at(members: np.ndarray, non_members: np.ndarray, threshold: float) -> tuple[float, float]:
    """(TPR, FPR) in % of an attack that calls "member" every score >= threshold."""
    members, non_members = np.asarray(members, float), np.asarray(non_members, float)
    if members.size == 0 or non_members.size == 0:
        raise ValueError("need at least one member and one non-member score")
    return 100 * float((members >= threshold).mean()), 100 * float((non_members >= threshold).mean())


def _draw_threshold(members, non_members, threshold, labels, xlabel):
    import matplotlib.pyplot as plt

    tpr, fpr = rates_at(members, non_members, threshold)
    fig, ax = plt.subplots(figsize=(7, 3.2))
    bins = np.linspace(min(members.min(), non_members.min()), max(members.max(), non_members.max()), 40)
    ax.hist(members, bins=bins, alpha=0.6, density=True, label=labels[0])
    ax.hist(non_members, bins=bins, alpha=0.6, density=True, label=labels[1])
    ax.axvline(threshold, color="k", ls="--")
    ax.set(xlabel=xlabel, ylabel="density",
           title=f"threshold {threshold:.2f}: TPR {tpr:.1f}%  FPR {fpr:.1f}%  (TPR - FPR {tpr - fpr:+.1f})")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def threshold_explorer(members, non_members, labels=("members", "non-members"), xlabel="attack score"):
    """Move a membership attack's threshold and watch its true and false positive rates.

    members, non_members: (N,) and (M,) attack scores (higher = "member"). Every score at or above the
    threshold is called a member: TPR is the share of members so called, FPR the share of non-members.
    Without widgets it draws the threshold with the largest TPR - FPR."""
    members, non_members = np.asarray(members, float).ravel(), np.asarray(non_members, float).ravel()
    rates_at(members, non_members, 0.0)  # refuses empty inputs
    best = best_threshold(members, non_members)
    if not is_interactive():
        return _static(_draw_threshold(members, non_members, best, labels, xlabel))
    import ipywidgets as widgets

    lo, hi = float(min(members.min(), non_members.min())), float(max(members.max(), non_members.max()))
    slider = widgets.FloatSlider(value=float(best), min=lo, max=hi, step=(hi - lo) / 200 or 1.0,
                                 description="threshold", continuous_update=False, readout_format=".2f")
    return _live(slider, lambda t: _draw_threshold(members, non_members, t, labels, xlabel), float(best))
