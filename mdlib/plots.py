"""Figures for the notebooks: each function takes data and returns a matplotlib Figure.

The key number goes in the title; nothing is shown or saved here (end a notebook cell
with `;`, save with `Session.save_figure`). A method keeps its colour in every figure;
its fusion-only variant ("-f") gets a lighter shade of it.
"""
from __future__ import annotations

import math
import textwrap

import matplotlib.colors as mcolors
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from .pipeline.results import method_order

__all__ = ["as_images", "method_colors", "example_grid", "training_curves", "retrieval_examples",
           "match_confusion", "probability_histograms", "metric_curves", "method_bars", "roc_curves",
           "time_vs_size", "graph_example", "tradeoff"]

_BASE_COLORS = {"original": "#7f7f7f", "retrain": "#000000", "finetune": "#1f77b4", "neggrad": "#ff7f0e",
                "dtd": "#2ca02c", "l-codec": "#9467bd", "erm-ktp": "#8c564b", "ul": "#e377c2",
                "multidelete": "#d62728", "multidelete-no-md": "#bcbd22", "multidelete-no-ukr": "#17becf",
                "multidelete-no-mkr": "#ff9896"}


def method_colors(methods) -> dict[str, tuple]:
    """A fixed colour per method name (lighter for "-f" variants); unknown names get grey shades."""
    out = {}
    spare = iter(sns.color_palette("Greys", 8)[2:] * 10)
    for m in methods:
        base, fusion = (m[:-2], True) if m.endswith("-f") else (m, False)
        color = mcolors.to_rgb(_BASE_COLORS[base]) if base in _BASE_COLORS else next(spare)
        out[m] = tuple(0.55 * c + 0.45 for c in color) if fusion else tuple(color)
    return out


def as_images(images) -> np.ndarray:
    """uint8 (N, S, S, 3) from uint8 (N, S, S, 3) or a float bank (N, 3, S, S) in [-1, 1] (tensor or array)."""
    x = images.detach().cpu().numpy() if hasattr(images, "detach") else np.asarray(images)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4:
        raise ValueError(f"images must have shape (N, S, S, 3) or (N, 3, S, S), got {x.shape}")
    if x.dtype != np.uint8:
        if x.shape[1] == 3 and x.shape[-1] != 3:
            x = x.transpose(0, 2, 3, 1)
        x = np.clip(np.rint((x.astype(np.float64) + 1) * 127.5), 0, 255).astype(np.uint8)
    if x.shape[-1] != 3:
        raise ValueError(f"images must be RGB with 3 channels last (N, S, S, 3), got {x.shape}")
    return x


def _wrap(text: str, width: int) -> str:
    return "\n".join(textwrap.wrap(str(text), width)) or " "


def example_grid(images, captions: list[str], ncols: int = 4, size: float = 2.2) -> Figure:
    """Images (N, S, S, 3) uint8 with their captions in a grid of `ncols` columns."""
    imgs = as_images(images)
    if len(captions) != len(imgs):
        raise ValueError(f"got {len(imgs)} images but {len(captions)} captions")
    nrows = max(1, math.ceil(len(imgs) / ncols))
    titles = [_wrap(cap, 26) for cap in captions]
    lines = max(t.count("\n") + 1 for t in titles) if titles else 1
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, (size + 0.16 * lines + 0.2) * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, img, title in zip(axes.flat, imgs, titles):
        ax.imshow(img, interpolation="nearest")
        ax.set_title(title, fontsize=8)
    fig.suptitle(f"{len(imgs)} examples")
    fig.tight_layout()
    return fig


def _x_column(df: pd.DataFrame, x: str | None) -> str:
    if x is not None:
        return x
    for name in ("step", "epoch"):
        if name in df.columns:
            return name
    df["row"] = np.arange(len(df))
    return "row"


def training_curves(history: list[dict], keys: list[str] | None = None, x: str | None = None) -> Figure:
    """One panel per logged quantity (e.g. loss, itm_acc, val_d_test) against the step or epoch.

    history: rows such as `train(...)` returns; keys default to every numeric column.
    """
    df = pd.DataFrame(history)
    if df.empty:
        raise ValueError("history is empty: nothing to plot")
    x = _x_column(df, x)
    keys = keys or [c for c in df.select_dtypes("number").columns if c not in (x, "seconds", "row")]
    missing = [k for k in keys if k not in df.columns]
    if missing:
        raise KeyError(f"history has no {missing}; it has {list(df.columns)}")
    fig, axes = plt.subplots(1, len(keys), figsize=(3.6 * len(keys), 3.2), squeeze=False)
    finals = []
    for ax, key in zip(axes.flat, keys):
        part = df[[x, key]].dropna()
        sns.lineplot(data=part, x=x, y=key, ax=ax, marker="o" if len(part) < 30 else None)
        ax.set_title(key)
        if len(part):
            finals.append(f"{key} {part[key].iloc[-1]:.3g}")
    fig.suptitle("final: " + ", ".join(finals))
    fig.tight_layout()
    return fig


def retrieval_examples(images, query_captions: list[str], ranked_image_indices, true_indices) -> Figure:
    """Each text query with its top-k retrieved images (rank order), the true image outlined in green.

    images: (M, S, S, 3) uint8 gallery; ranked_image_indices: (Q, k) rows of `images`; true_indices: (Q,).
    """
    imgs = as_images(images)
    ranked = np.asarray(ranked_image_indices)
    true = np.asarray(true_indices).ravel()
    if ranked.ndim != 2 or len(ranked) != len(query_captions) or len(true) != len(ranked):
        raise ValueError(f"need Q captions, ranked (Q, k) and true (Q,), got {len(query_captions)}, "
                         f"{ranked.shape}, {true.shape}")
    q, k = ranked.shape
    fig, axes = plt.subplots(q, k + 1, figsize=(1.6 * (k + 1) + 1.6, 1.7 * q), squeeze=False,
                             gridspec_kw={"width_ratios": [2] + [1] * k})
    hits = 0
    for row, (caption, idx, t) in enumerate(zip(query_captions, ranked, true)):
        text_ax = axes[row, 0]
        text_ax.axis("off")
        rank = int(np.flatnonzero(idx == t)[0]) + 1 if t in idx else None
        hits += rank is not None
        text_ax.text(0, 0.5, _wrap(caption, 30) + f"\n\ntrue image: {f'rank {rank}' if rank else f'not in top {k}'}",
                     va="center", fontsize=8, transform=text_ax.transAxes)
        for col, i in enumerate(idx, 1):
            ax = axes[row, col]
            ax.imshow(imgs[i], interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            hit = i == t
            for spine in ax.spines.values():
                spine.set_visible(hit)
                spine.set_color("tab:green")
                spine.set_linewidth(4)
            if row == 0:
                ax.set_title(f"#{col}", fontsize=8)
    fig.suptitle(f"text → image: the true image is in the top {k} for {hits}/{q} queries")
    fig.tight_layout()
    return fig


def match_confusion(p_true_pairs, p_negative_pairs, threshold: float = 0.5) -> Figure:
    """2x2 confusion (matched / unmatched pairs vs predicted) of match probabilities at `threshold`."""
    pos = np.asarray(p_true_pairs, dtype=float).ravel()
    neg = np.asarray(p_negative_pairs, dtype=float).ravel()
    if pos.size == 0 or neg.size == 0:
        raise ValueError("need at least one matched and one unmatched pair")
    tp, fp = int((pos >= threshold).sum()), int((neg >= threshold).sum())
    counts = np.array([[tp, pos.size - tp], [fp, neg.size - fp]])
    share = counts / counts.sum(axis=1, keepdims=True)
    labels = np.array([[f"{c}\n({s:.0%})" for c, s in zip(rc, rs)] for rc, rs in zip(counts, share)])
    acc = (tp + neg.size - fp) / (pos.size + neg.size)
    fig, ax = plt.subplots(figsize=(4.2, 3.6))
    sns.heatmap(share, annot=labels, fmt="", cmap="Blues", vmin=0, vmax=1, cbar=False, ax=ax,
                xticklabels=["predicted match", "predicted no match"], yticklabels=["matched pair", "unmatched pair"])
    ax.set_title(f"accuracy {acc:.1%} at threshold {threshold:g}")
    fig.tight_layout()
    return fig


def probability_histograms(groups: dict[str, np.ndarray], title: str = "", xlabel: str = "probability",
                           bins: int = 30) -> Figure:
    """Overlaid density histograms of scores per group (e.g. D_f, D_r, D_test), each labelled with its mean."""
    if not groups:
        raise ValueError("groups is empty: pass e.g. {'D_f': p_forget, 'D_r': p_retain}")
    values = {k: np.asarray(v.detach().cpu() if hasattr(v, "detach") else v, dtype=float).ravel()
              for k, v in groups.items()}
    allv = np.concatenate(list(values.values()))
    lo, hi = (0.0, 1.0) if allv.min() >= 0 and allv.max() <= 1 else (allv.min(), allv.max())
    edges = np.linspace(lo, hi, bins + 1)
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for (name, v), color in zip(values.items(), sns.color_palette(n_colors=len(values))):
        sns.histplot(v, bins=edges, stat="density", element="step", fill=True, alpha=0.25, color=color,
                     label=f"{name} (mean {v.mean():.3f})", ax=ax)
    ax.set_xlabel(xlabel)
    ax.legend(fontsize=8)
    means = ", ".join(f"{k} {v.mean():.3f}" for k, v in values.items())
    ax.set_title(f"{title}: mean {means}" if title else f"mean {means}", fontsize=10)
    fig.tight_layout()
    return fig


def metric_curves(history: list[dict], keys=("d_f", "val_d_test"), x: str = "step",
                  references: dict[str, dict[str, float]] | None = None, best_step: int | None = None,
                  title: str = "") -> Figure:
    """The D_f score and D_test over unlearning steps, one panel each, with reference lines.

    history: rows with `x` and each key (e.g. `UnlearnResult.history`); references: per key,
    {label: value}, e.g. {"val_d_test": {"original": 91.0}, "d_f": {"retrain": 50.3}}.
    The D_f panel always shows 50 (D_f indistinguishable from D_r). best_step marks the kept checkpoint.
    """
    df = pd.DataFrame(history)
    keys = [k for k in keys if k in df.columns]
    if df.empty or x not in df.columns or not keys:
        raise ValueError(f"history needs a {x!r} column and one of the keys; it has {list(df.columns)}")
    refs = {k: dict(v) for k, v in (references or {}).items()}
    if "d_f" in keys:
        refs.setdefault("d_f", {}).setdefault("indistinguishable", 50.0)
    fig, axes = plt.subplots(1, len(keys), figsize=(4.4 * len(keys), 3.4), squeeze=False)
    finals = []
    for ax, key in zip(axes.flat, keys):
        part = df[[x, key]].dropna()
        ax.plot(part[x], part[key], marker="o" if len(part) < 30 else None, color="tab:red")
        for (label, value), style in zip(refs.get(key, {}).items(), ["--", ":", "-.", (0, (1, 3))] * 3):
            ax.axhline(value, ls=style, color="0.3", lw=1.2, label=f"{label} {value:.1f}")
        if best_step is not None:
            ax.axvline(best_step, color="tab:green", lw=1, alpha=0.7, label=f"kept: step {best_step}")
        ax.set_xlabel(x)
        ax.set_ylabel(key)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
        if len(part):
            row = part[part[x] == best_step] if best_step is not None and (part[x] == best_step).any() else part.tail(1)
            finals.append(f"{key} {row[key].iloc[0]:.1f}")
    fig.suptitle((f"{title}: " if title else "") + ("kept checkpoint: " if best_step is not None else "final: ")
                 + ", ".join(finals))
    fig.tight_layout()
    return fig


def _metric_rows(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Rows of `metric` with a `value` column: from a long table (metric, value) or a wide one (a `metric` column)."""
    if "metric" not in df.columns and "value" not in df.columns and metric in df.columns:
        df = df.rename(columns={metric: "value"})
    if "metric" in df.columns:
        df = df[df["metric"] == metric]
        if df.empty:
            raise ValueError(f"no rows with metric {metric!r}")
    for col in ("method", "value"):
        if col not in df.columns:
            raise KeyError(f"need a long table with 'method' and 'value' columns (such as collect(run_dir)); "
                           f"got {list(df.columns)}")
    return df


def method_bars(df: pd.DataFrame, metric: str, reference: str | float | None = "retrain",
                hue: str | None = None) -> Figure:
    """Table-1-shaped bars: mean ± sd over seeds of `metric` per method, with a reference line.

    df: long table (method, value, optional metric / task / seed columns). reference: a method
    name (its mean), a number, or None. Hue defaults to `task` when there are several tasks.
    """
    df = _metric_rows(df, metric)
    order = method_order(df["method"])
    if hue is None and "task" in df.columns and df["task"].nunique() > 1:
        hue = "task"
    fig, ax = plt.subplots(figsize=(max(4.5, 0.55 * len(order) + 1.5), 3.8))
    kwargs = dict(hue=hue) if hue else dict(hue="method", palette=method_colors(order), legend=False)
    sns.barplot(data=df, x="method", y="value", order=order, errorbar="sd", ax=ax, **kwargs)
    ax.tick_params(axis="x", rotation=45)
    for label in ax.get_xticklabels():
        label.set_horizontalalignment("right")
    ax.set_xlabel("")
    ax.set_ylabel(metric)
    means = df.groupby("method")["value"].mean()
    title = f"{metric} by method"
    if isinstance(reference, str) and reference in means:
        # one line per hue level (e.g. Retrain's score on each task), in that level's colour
        groups = df[df["method"] == reference].groupby(hue)["value"].mean() if hue and hue != "method" else \
            pd.Series({reference: means[reference]})
        colors = {label: h.get_facecolor() for h, label in zip(*ax.get_legend_handles_labels())} if \
            hue and hue != "method" else {}
        for level, value in groups.items():
            ax.axhline(value, ls="--", lw=1.2, color=colors.get(str(level), "0.2"),
                       label=f"{reference} {value:.1f}" if len(groups) == 1 else f"{reference} ({level}) {value:.1f}")
        title += f" ({reference} " + ", ".join(f"{v:.1f}" for v in groups) + ")"
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    elif reference is not None and not isinstance(reference, str):
        ax.axhline(float(reference), ls="--", color="0.2", lw=1.2, label=f"reference {float(reference):.1f}")
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
        title += f" (reference {float(reference):.1f})"
    others = means.drop(reference, errors="ignore") if isinstance(reference, str) else means
    if len(others):
        title += f"; lowest {others.idxmin()} {others.min():.1f}, highest {others.idxmax()} {others.max():.1f}"
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def tradeoff(tuning: pd.DataFrame, title: str = "") -> Figure:
    """Forgetting against utility for every grid point of every method (the protocol's tuning runs).

    tuning: `protocol.Table1.tuning` (columns method, test_dist_retrain, test_d_test, chosen). x = D_f score
    minus Retrain's (0 = forgets as much as retraining), y = D_test; small dots are grid points, the
    chosen setting of each method is ringed, the original and Retrain are the reference stars.
    """
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    order = method_order(tuning["method"])
    colors = method_colors(order)
    ax.axvline(0, color="0.6", lw=0.8, ls=":")
    for m in order:
        rows = tuning[tuning["method"] == m]
        x, y = rows["test_dist_retrain"].to_numpy(float), rows["test_d_test"].to_numpy(float)
        if m in ("original", "retrain"):
            ax.scatter(x, y, marker="*", s=180, color=colors[m], edgecolor="white", zorder=4, label=m)
            continue
        ax.scatter(x, y, s=22, color=colors[m], alpha=0.8, label=m, zorder=2)
        chosen = rows["chosen"].to_numpy(bool) if "chosen" in rows else np.zeros(len(rows), bool)
        ax.scatter(x[chosen], y[chosen], s=110, facecolor="none", edgecolor=colors[m], lw=1.8, zorder=3)
    ax.set_xlabel("D_f score minus Retrain's (0 = forgets like Retrain)")
    ax.set_ylabel("D_test")
    ax.set_title(title or "every grid point (dots), the chosen setting (rings), original and Retrain (stars)",
                 fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1), ncol=1)
    fig.tight_layout()
    return fig


def roc_curves(curves: dict[str, tuple], log: bool = True) -> Figure:
    """ROC curves {name: (fpr, tpr)} with their AUC; log axes show the low-FPR regime attacks care about."""
    if not curves:
        raise ValueError("curves is empty: pass {name: (fpr, tpr)}")
    fig, ax = plt.subplots(figsize=(4.8, 4.2))
    aucs = {}
    colors = method_colors(curves) if all(c in _BASE_COLORS or c[:-2] in _BASE_COLORS for c in curves) else \
        dict(zip(curves, sns.color_palette(n_colors=len(curves))))
    low = 1.0
    for name, (fpr, tpr) in curves.items():
        fpr, tpr = np.asarray(fpr, dtype=float), np.asarray(tpr, dtype=float)
        order = np.argsort(fpr, kind="stable")
        fpr, tpr = fpr[order], tpr[order]
        aucs[name] = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))
        ax.plot(fpr, tpr, label=f"{name} (AUC {aucs[name]:.3f})", color=colors[name])
        if (fpr > 0).any():
            low = min(low, fpr[fpr > 0].min())
    grid = np.logspace(np.log10(max(low, 1e-5)), 0, 100) if log else np.linspace(0, 1, 100)
    ax.plot(grid, grid, ls="--", color="0.5", lw=1, label="chance")
    if log:
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(max(low, 1e-5), 1)
        ax.set_ylim(max(low, 1e-5), 1)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.legend(fontsize=8)
    best = max(aucs, key=aucs.get)
    ax.set_title(f"highest AUC: {best} {aucs[best]:.3f}", fontsize=10)
    fig.tight_layout()
    return fig


def time_vs_size(df: pd.DataFrame, metric: str = "seconds") -> Figure:
    """Wall time against |D_f| per method (mean ± sd over seeds), with each method's fitted slope.

    df: long table with method, df_size and value (rows of `metric` when there is a metric column), or a
    wide one with method, df_size and a `metric` column.
    """
    df = _metric_rows(df, metric)
    if "df_size" not in df.columns:
        raise KeyError("need a df_size column (the number of deleted samples)")
    order = method_order(df["method"])
    slopes = {}
    for m in order:
        part = df[df["method"] == m]
        if part["df_size"].nunique() > 1:
            slopes[m] = np.polyfit(part["df_size"].astype(float), part["value"].astype(float), 1)[0]
    fig, ax = plt.subplots(figsize=(5.6, 3.8))
    sns.lineplot(data=df, x="df_size", y="value", hue="method", hue_order=order, palette=method_colors(order),
                 marker="o", errorbar="sd", ax=ax)
    handles, labels = ax.get_legend_handles_labels()
    labels = [f"{m} ({slopes[m] * 1000:.1f} s per 1k)" if m in slopes else m for m in labels]
    ax.legend(handles, labels, fontsize=8)
    ax.set_xlabel("|D_f| (deleted samples)")
    ax.set_ylabel(f"{metric}")
    means = df.groupby(["method", "df_size"])["value"].mean()
    (m_max, size_max), v_max = means.idxmax(), means.max()
    ax.set_title(f"unlearning time vs |D_f|; slowest: {m_max} {v_max:.1f} s at |D_f| = {size_max}", fontsize=10)
    fig.tight_layout()
    return fig


def graph_example(graph, names: list[str], kinds, sentence: str, label: str = "", max_label: int = 22) -> Figure:
    """One graph-text example: its subgraph (genes and phenotypes, the claimed pair highlighted) and sentence.

    graph: a torch_geometric Data with `edge_index` and `node_ids` (rows of the extract); names / kinds:
    the extract's node names and kinds (0 = gene, 1 = phenotype). Nodes 0 and 1 are the claimed pair.
    """
    import networkx as nx

    g = nx.Graph()
    ids = graph.node_ids.tolist()
    g.add_nodes_from(range(len(ids)))
    g.add_edges_from(zip(*graph.edge_index.tolist()))
    pos = nx.spring_layout(g, seed=0)
    fig, ax = plt.subplots(figsize=(7.5, 5.5))
    colours = ["#1f77b4" if kinds[i] == 0 else "#2ca02c" for i in ids]
    sizes = [420 if n < 2 else 120 for n in range(len(ids))]
    nx.draw_networkx_edges(g, pos, ax=ax, alpha=0.3)
    nx.draw_networkx_nodes(g, pos, ax=ax, node_color=colours, node_size=sizes, edgecolors=["red" if n < 2 else "none" for n in range(len(ids))])
    short = {n: (names[i] if len(names[i]) <= max_label else names[i][:max_label - 1] + "…") for n, i in enumerate(ids)}
    nx.draw_networkx_labels(g, pos, labels={n: short[n] for n in range(len(ids)) if n < 2 or len(ids) <= 16},
                            font_size=8, ax=ax)
    ax.set_title(_wrap(f"{sentence}  [{label}]" if label else sentence, 90), fontsize=10)
    ax.axis("off")
    from matplotlib.lines import Line2D

    ax.legend(handles=[Line2D([], [], marker="o", ls="", color="#1f77b4", label="gene"),
                       Line2D([], [], marker="o", ls="", color="#2ca02c", label="phenotype"),
                       Line2D([], [], marker="o", ls="", mfc="white", mec="red", label="the claimed pair")],
              loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig
