"""The model diagram: one box per component, losses that can be hidden, the "-F" view, labels read from the model."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import FancyBboxPatch  # noqa: E402
from matplotlib.text import Text  # noqa: E402

from mdlib.diagram import model_diagram  # noqa: E402
from mdlib.models import ImageEncoder, ModelConfig, MultimodalModel  # noqa: E402

TINY = ModelConfig(vocab_size=50, hidden=48, image_layers=3, text_layers=1, fusion_layers=1, heads=2,
                   intermediate=64, embed_dim=16)
COMPONENTS = ("f_I", "f_T", "f_F", "head")
LOSSES = ("L_MD", "L_MKR", "L_UKR", "L_head")


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def texts(fig: Figure) -> list[str]:
    """Every visible string of the figure: box labels, loss tags, titles, the legend."""
    return [t.get_text() for t in fig.findobj(Text) if t.get_text() and t.get_visible()]


def box_titles(fig: Figure, name: str) -> list[str]:
    return [t for t in texts(fig) if t == name or t.startswith(name + " ")]


def detail_of(fig: Figure, name: str) -> str:
    """The detail text drawn under a component's title (the next text added to the axes)."""
    ax_texts = [t.get_text() for t in fig.axes[0].texts]
    title = next(i for i, t in enumerate(ax_texts) if t == name or t.startswith(name + " "))
    return ax_texts[title + 1]


def n_boxes(fig: Figure) -> int:
    return sum(isinstance(p, FancyBboxPatch) for p in fig.axes[0].patches)


def test_one_box_per_component_and_every_loss():
    fig = model_diagram()
    assert isinstance(fig, Figure)
    assert tuple(fig.get_size_inches()) == pytest.approx((9, 4.5))
    assert "where each loss attaches" in fig._suptitle.get_text()
    for name in COMPONENTS + LOSSES:
        assert len(box_titles(fig, name)) == 1, name
    # 2 inputs + 4 components + 4 loss tags
    assert n_boxes(fig) == 10
    # the loss weights come from MultiDeleteConfig and PAPER_SETTINGS
    from mdlib.methods.multidelete import PAPER_SETTINGS, MultiDeleteConfig

    keys = ("alpha", "beta", "gamma", "head_retention")
    ours = ", ".join(f"{getattr(MultiDeleteConfig(), k):g}" for k in keys)
    paper = ", ".join(f"{PAPER_SETTINGS[k]:g}" for k in keys)
    assert any(f"({ours}) in mdlib, ({paper}) in the paper" in t for t in texts(fig))


def test_losses_can_be_hidden():
    fig = model_diagram(show_losses=False)
    for name in COMPONENTS:
        assert len(box_titles(fig, name)) == 1, name
    assert not any(loss in t for t in texts(fig) for loss in LOSSES)
    assert n_boxes(fig) == 6


def test_fusion_only_greys_the_encoders_and_marks_what_trains():
    full, fused = model_diagram(TINY), model_diagram(TINY, fusion_only=True)
    assert not any("frozen in -F" in t for t in texts(full))
    assert "frozen in -F" in detail_of(fused, "f_I") and "frozen in -F" in detail_of(fused, "f_T")
    assert "frozen" not in detail_of(fused, "f_F") and "frozen" not in detail_of(fused, "head")
    legend = [t.get_text() for t in fused.axes[0].get_legend().get_texts()]
    assert any("frozen" in t for t in legend) and any("fusion_parameters()" in t for t in legend)
    # the trained boxes (f_F, head) share one shade, the encoders another
    boxes = [p for p in fused.axes[0].patches if isinstance(p, FancyBboxPatch)]
    faces = [tuple(p.get_facecolor()) for p in boxes[2:6]]  # f_I, f_T, f_F, head (after the two inputs)
    assert faces[0] == faces[1] and faces[2] == faces[3] and faces[0] != faces[2]
    # L_UKR cannot act when the encoders are frozen
    assert any(t.startswith("0 in -F") for t in texts(fused))


def test_labels_come_from_a_config():
    fig = model_diagram(TINY)
    assert "H=48" in detail_of(fig, "f_I") and "3 layers" in detail_of(fig, "f_I")
    assert "H=48" in detail_of(fig, "f_T") and "1 layer " in detail_of(fig, "f_T")
    assert "1 layer" in detail_of(fig, "f_F") and "2 heads" in detail_of(fig, "f_F")
    generic = model_diagram(None)
    assert not any("H=" in t for t in texts(generic))
    graph = model_diagram(ModelConfig(modality="graph", graph_layers=4))
    assert box_titles(graph, "f_I") == ["f_I  graph encoder"] and "GNN" in detail_of(graph, "f_I")
    assert "4 layers" in detail_of(graph, "f_I")
    with pytest.raises(TypeError, match="MultimodalModel"):
        model_diagram("retrieval")


def test_labels_come_from_the_built_modules():
    # an image encoder narrower than the config says: the diagram reports the module, and its adapter
    config = ModelConfig(vocab_size=50, hidden=32, image_layers=1, text_layers=1, fusion_layers=1, heads=2,
                         intermediate=64, embed_dim=16, n_classes=3, n_images=2)
    model = MultimodalModel(config, image_encoder=ImageEncoder.from_config(32, 8, 48, 2, 2, 64))
    fig = model_diagram(model)
    assert "H=48" in detail_of(fig, "f_I") and "2 layers" in detail_of(fig, "f_I")
    assert "H=32" in detail_of(fig, "f_T")
    assert "48→32" in detail_of(fig, "f_F")
    assert "3 classes" in detail_of(fig, "head") and "2 fused [CLS]" in detail_of(fig, "head")
