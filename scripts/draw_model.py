#!/usr/bin/env python
"""Redraw docs/model.png, the README's diagram of the model and of where MultiDelete's losses attach.

    python scripts/draw_model.py                  # writes docs/model.png
    python scripts/draw_model.py --fusion-only --out /tmp/model-f.png

The sizes are the full-mode retrieval model's (`load_task("retrieval").model_config()` less the
tokenizer's vocabulary size, which the diagram does not show); they are read from mdlib's defaults
without building the task, so nothing is trained, downloaded or cached.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

from mdlib.diagram import model_diagram  # noqa: E402
from mdlib.models import ModelConfig  # noqa: E402
from mdlib.tasks import DEFAULT_MODEL, RetrievalTask  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "docs" / "model.png"))
    ap.add_argument("--fusion-only", action="store_true", help="the MultiDelete-F view (encoders frozen)")
    ap.add_argument("--dpi", type=int, default=120)
    a = ap.parse_args()
    config = ModelConfig(**DEFAULT_MODEL, n_classes=RetrievalTask.n_classes, n_images=RetrievalTask.n_images)
    fig = model_diagram(config, fusion_only=a.fusion_only)
    fig.savefig(a.out, dpi=a.dpi, bbox_inches="tight")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
