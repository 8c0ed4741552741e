"""A diagram of the model and of where MultiDelete's losses attach, drawn from the model itself.

`model_diagram` reads its labels from a `MultimodalModel` (the built modules) or a `ModelConfig`, and
the loss weights from `MultiDeleteConfig`, so the picture changes when the code does. Like `plots.py`
it returns a matplotlib Figure and neither shows nor saves it.
"""
from __future__ import annotations

from dataclasses import dataclass

import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Patch

__all__ = ["model_diagram"]

# Colours: one per component; the losses in MultiDelete's red (plots.method_colors).
_COMPONENT = {"f_I": ("#4C72B0", "#dde7f4"), "f_T": ("#3d8b57", "#dcefe2"), "f_F": ("#c8632c", "#fae6d9"),
              "head": ("#6f5fa8", "#e8e4f4"), "input": ("#555555", "#ffffff")}
_LOSS = ("#d62728", "#fdecec")
_FROZEN = ("#a0a0a0", "#efefef", "#8a8a8a")  # edge, fill, text
_TRAINED = ("#b8860b", "#fde9a9")  # what the "-F" variants train, highlighted


@dataclass
class _Labels:
    """What the boxes say: the second modality and the detail line(s) under each component."""

    modality: str = "image"
    image: str = ""
    text: str = ""
    fusion: str = ""
    head: str = ""


def _describe(model_or_config) -> _Labels:
    """Labels from a MultimodalModel (its built modules), a ModelConfig, or None (generic)."""
    from .models import ModelConfig

    if model_or_config is None:
        return _Labels(image="ViT (a GNN for graph-text)", text="BERT", fusion="text attends to image",
                       head="MLP on the\nfused [CLS]")
    if isinstance(model_or_config, ModelConfig):
        return _from_config(model_or_config)
    if hasattr(model_or_config, "config") and hasattr(model_or_config, "image_encoder"):
        return _from_model(model_or_config)
    raise TypeError(f"model_or_config must be a MultimodalModel, a ModelConfig or None, got {type(model_or_config).__name__}")


def _n(count, noun: str) -> str:
    return f"{count} {noun}" + ("" if str(count) == "1" else "s")


def _head_line(n_classes: int, n_images: int) -> str:
    cls = "fused [CLS]" if n_images == 1 else f"{n_images} fused [CLS]"
    return f"MLP on {cls}\n→ {n_classes} classes"


def _short(name: str, width: int = 28) -> str:
    """A backbone's folder or hub id, cut to fit a box."""
    name = str(name).rstrip("/")
    if len(name) > width:
        name = name.rsplit("/", 1)[-1]
    return name if len(name) <= width else name[:width - 1] + "…"


def _from_config(c) -> _Labels:
    if c.modality == "graph":
        image = f"GNN (GINE) · {_n(c.graph_layers, 'layer')} · H={c.hidden}"
    elif c.image_backbone:
        image = f"pretrained ViT\n{_short(c.image_backbone)}"
    else:
        image = f"ViT · {_n(c.image_layers, 'layer')} · H={c.hidden}"
    text = f"pretrained BERT\n{_short(c.text_backbone)}" if c.text_backbone else f"BERT · {_n(c.text_layers, 'layer')} · H={c.hidden}"
    # f_F works at the text encoder's width, which a pretrained BERT sets.
    width = "H of the BERT" if c.text_backbone else f"H={c.hidden}"
    fusion = f"{_n(c.fusion_layers, 'layer')} · {_n(c.heads, 'head')} · {width}"
    return _Labels(c.modality, image, text, fusion, _head_line(c.n_classes, c.n_images))


def _layers(module, fallback: str) -> str:
    """Layer count of a built encoder: a transformers model's config, or its list of graph convolutions."""
    for attr in ("vit", "bert"):
        inner = getattr(module, attr, None)
        if inner is not None:
            return str(inner.config.num_hidden_layers)
    convs = getattr(module, "convs", None)
    return str(len(convs)) if convs is not None else fallback


def _from_model(model) -> _Labels:
    c = model.config
    h_img, h_txt = model.image_encoder.hidden_size, model.text_encoder.hidden_size
    kind = "GNN (GINE)" if c.modality == "graph" else "ViT"
    image = f"{kind} · {_n(_layers(model.image_encoder, '?'), 'layer')} · H={h_img}"
    text = f"BERT · {_n(_layers(model.text_encoder, '?'), 'layer')} · H={h_txt}"
    first = model.fusion.layers[0].attention.self
    fusion = f"{_n(len(model.fusion.layers), 'layer')} · {_n(first.num_attention_heads, 'head')} · H={h_txt}"
    if type(model.image_to_fusion).__name__ != "Identity":
        fusion += f"\n+ adapter Linear {h_img}→{h_txt}"
    head = _head_line(model.head[-1].out_features, model.head[0].in_features // h_txt)
    return _Labels(c.modality, image, text, fusion, head)


def _box(ax, x, y, w, h, name, detail, colors, text_color="#222222", lw=1.4):
    """A rounded box with a bold name and a smaller detail line under it; returns its anchor points."""
    edge, face = colors
    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0,rounding_size=0.18", linewidth=lw,
                                edgecolor=edge, facecolor=face, zorder=2))
    cx, cy = x + w / 2, y + h / 2
    if detail:
        ax.text(cx, cy + 0.22, name, ha="center", va="bottom", fontsize=9.5, weight="bold", color=text_color, zorder=3)
        ax.text(cx, cy + 0.1, detail, ha="center", va="top", fontsize=7.5, color=text_color, zorder=3,
                linespacing=1.25)
    else:
        ax.text(cx, cy, name, ha="center", va="center", fontsize=9.5, weight="bold", color=text_color, zorder=3)
    return {"left": (x, cy), "right": (x + w, cy), "top": (cx, y + h), "bottom": (cx, y)}


def _arrow(ax, start, end, color="#333333"):
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=12, linewidth=1.3, color=color,
                                 shrinkA=0, shrinkB=0, zorder=1))


def _loss(ax, x, y, w, h, name, lines, start, attach, muted=False):
    """A loss tag (name and explanation) with a dashed line from `start` on its edge to each point in `attach`."""
    edge, face = (_FROZEN[0], _FROZEN[1]) if muted else _LOSS
    text_color = _FROZEN[2] if muted else "#222222"
    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0,rounding_size=0.15", linewidth=1.1,
                                edgecolor=edge, facecolor=face, zorder=2))
    ax.text(x + 0.15, y + h - 0.12, name, ha="left", va="top", fontsize=8.5, weight="bold",
            color=text_color if muted else edge, zorder=3)
    ax.text(x + 0.15, y + h - 0.52, lines, ha="left", va="top", fontsize=7.2, color=text_color, zorder=3,
            linespacing=1.3)
    for point in attach:
        ax.plot(*point, marker="o", markersize=5, color=edge, zorder=4)
        ax.plot([start[0], point[0]], [start[1], point[1]], linestyle=(0, (3, 2)), linewidth=1.1, color=edge, zorder=1)


def _weights() -> tuple[str, str]:
    """The loss weights: mdlib's defaults and the paper's, read from MultiDeleteConfig and PAPER_SETTINGS."""
    from .methods.multidelete import PAPER_SETTINGS, MultiDeleteConfig

    d = MultiDeleteConfig()

    def fmt(s):
        return ", ".join(f"{s[k]:g}" for k in ("alpha", "beta", "gamma", "head_retention"))

    return fmt(vars(d)), fmt(PAPER_SETTINGS)


def model_diagram(model_or_config=None, *, show_losses: bool = True, fusion_only: bool = False) -> Figure:
    """Boxes and arrows of f = (f_I, f_T, f_F, head) and, with `show_losses`, where each MultiDelete loss attaches.

    model_or_config: a `MultimodalModel` (labels from its built modules), a `ModelConfig` (labels from
    its sizes), or None (generic labels). `fusion_only=True` shades what the "-F" variants train
    (`MultimodalModel.fusion_parameters()`: f_F and the head) and greys out the frozen encoders.
    """
    lab = _describe(model_or_config)
    fig, ax = plt.subplots(figsize=(9, 4.5))
    ax.set_position([0.005, 0.0, 0.99, 0.86])
    ax.set_xlim(0, 18)
    ax.set_ylim(0, 8.0)
    ax.axis("off")

    # encoders: their own colours, or grey when frozen; f_F and head: highlighted when they alone train
    frozen = "\nfrozen in -F" if fusion_only else ""
    enc = {k: (_FROZEN[:2], _FROZEN[2]) if fusion_only else (_COMPONENT[k], "#222222") for k in ("f_I", "f_T")}
    trained = {k: _TRAINED if fusion_only else _COMPONENT[k] for k in ("f_F", "head")}
    lw = 2.4 if fusion_only else 1.4

    second = "graph" if lab.modality == "graph" else "image"
    img_in = _box(ax, 0.1, 5.3, 1.7, 1.3, f"{second}\nI", "", _COMPONENT["input"], lw=1.0)
    txt_in = _box(ax, 0.1, 1.0, 1.7, 1.3, "text\nT", "", _COMPONENT["input"], lw=1.0)
    f_i = _box(ax, 2.5, 5.05, 4.0, 1.8, f"f_I  {second} encoder", lab.image + frozen, *enc["f_I"])
    f_t = _box(ax, 2.5, 0.75, 4.0, 1.8, "f_T  text encoder", lab.text + frozen, *enc["f_T"])
    f_f = _box(ax, 8.3, 2.95, 3.7, 2.0, "f_F  fusion", "cross-attention\n" + lab.fusion, trained["f_F"], lw=lw)
    head = _box(ax, 13.0, 2.95, 2.6, 2.0, "head", lab.head, trained["head"], lw=lw)
    out_x = 16.5
    ax.text(17.3, head["right"][1], "prediction", ha="center", va="center", fontsize=9, color="#222222")

    _arrow(ax, img_in["right"], f_i["left"])
    _arrow(ax, txt_in["right"], f_t["left"])
    _arrow(ax, f_i["right"], (f_f["left"][0], f_f["left"][1] + 0.55))
    _arrow(ax, f_t["right"], (f_f["left"][0], f_f["left"][1] - 0.55))
    _arrow(ax, f_f["right"], head["left"])
    _arrow(ax, head["right"], (out_x, head["right"][1]))
    small = dict(fontsize=6.8, color="#555555", zorder=5)
    ax.text(7.45, 5.5, "keys, values", ha="center", va="bottom", rotation=-27, **small)
    ax.text(7.45, 2.35, "queries", ha="center", va="top", rotation=27, **small)
    fused_pt = ((f_f["right"][0] + head["left"][0]) / 2, f_f["right"][1])
    logits_pt = ((head["right"][0] + out_x) / 2, head["right"][1])
    on_line = dict(ha="center", va="top", bbox=dict(boxstyle="square,pad=0.1", facecolor="white", edgecolor="none"))
    ax.text(fused_pt[0], fused_pt[1] - 0.25, "fused\n[CLS]", **on_line, **small)
    ax.text(logits_pt[0], logits_pt[1] - 0.25, "logits", **on_line, **small)

    name = "MultiDelete-F" if fusion_only else "MultiDelete"
    fig.suptitle(f"{name}: where each loss attaches" if show_losses else f"{name}: the model f", fontsize=12, y=0.985)

    if show_losses:
        ours, paper = _weights()
        fig.text(0.5, 0.905, f"L = α·L_MD + β·L_MKR + γ·L_UKR + λ·L_head;  f' is being unlearned, f is the frozen "
                 f"original.  (α, β, γ, λ) = ({ours}) in mdlib, ({paper}) in the paper",
                 ha="center", va="center", fontsize=7.5, color="#333333")
        _loss(ax, 7.2, 6.45, 5.9, 1.45, "L_MD  modality decoupling",
              "deleted pair f'(I_i, T_i), (I_i, T_i) ∈ D_f, pushed\nto a mismatched pair f(I_p, T_q), p ≠ q",
              (fused_pt[0], 6.45), [fused_pt])
        _loss(ax, 7.2, 0.05, 5.9, 1.45, "L_MKR  multimodal knowledge retention",
              "retained pairs (I_r, T_r) ∈ D_r:\nf'(I_r, T_r) kept at frozen f(I_r, T_r)",
              (fused_pt[0], 1.5), [fused_pt])
        ukr = ("0 in -F: the encoders cannot move" if fusion_only else
               "deleted pairs (I_i, T_i) ∈ D_f: [f'_I(I_i); f'_T(T_i)]\nkept at frozen [f_I(I_i); f_T(T_i)]")
        _loss(ax, 1.3, 3.1, 5.9, 1.45, "L_UKR  unimodal knowledge retention", ukr,
              (f_i["bottom"][0], 4.55), [f_i["bottom"], f_t["top"]], muted=fusion_only)
        _loss(ax, 13.4, 6.45, 4.55, 1.45, "L_head  head retention",
              "logits of f' kept at frozen f's on\nD_r pairs and mismatched D_r pairs",
              (logits_pt[0], 6.45), [logits_pt])

    if fusion_only:
        handles = [Patch(facecolor=_TRAINED[1], edgecolor=_TRAINED[0], linewidth=2,
                         label="trained by -F: fusion_parameters() (f_F, head)"),
                   Patch(facecolor=_FROZEN[1], edgecolor=_FROZEN[0], label="frozen in -F: f_I, f_T stay bit-identical")]
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(0.0, 1.0), fontsize=7.2, frameon=False)
    return fig
