"""Unimodal probes (the paper's "Acc." row): does f' keep the original unimodal knowledge?

Linear classifiers g_I and g_T are trained on the *original* model's unimodal embeddings (the
image and text [CLS] states of f_I and f_T) to predict a property of the example; their
accuracy on an unlearned model's embeddings measures how much of that unimodal knowledge
survived. If f'_I(I) = f_I(I), then g_I(f'_I(I)) = g_I(f_I(I)) and the accuracy is unchanged.

The property comes from `probe_labels`: a fact about the scene for the image tasks
(`scene_labels`), the phenotype's branch of the HPO for graph-text (`hpo_labels`).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from .data.examples import ExampleSet
from .models import MultimodalModel
from .tasks.base import Task


@torch.no_grad()
def unimodal_embeddings(model: MultimodalModel, task: Task, examples: ExampleSet,
                        batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Image and text [CLS] states of every example: (N, n_images * H_img) and (N, H_txt)."""
    model.eval()
    device = next(model.parameters()).device
    images, texts = [], []
    for batch in examples.batches(batch_size, device=device):
        enc = task.encode(model, batch)
        images.append(enc.image[:, :, 0].flatten(1).float().cpu())
        texts.append(enc.text[:, 0].float().cpu())
    return torch.cat(images).numpy(), torch.cat(texts).numpy()


@dataclass
class UnimodalProbe:
    """g_I and g_T: logistic regressions fitted on f's unimodal embeddings of `fit_on` examples."""

    image_probe: object
    text_probe: object

    @classmethod
    def fit(cls, model: MultimodalModel, task: Task, examples: ExampleSet, labels: np.ndarray,
            seed: int = 0) -> "UnimodalProbe":
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        img, txt = unimodal_embeddings(model, task, examples)
        make = lambda: make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=seed))  # noqa: E731
        return cls(make().fit(img, labels), make().fit(txt, labels))

    def accuracy(self, model: MultimodalModel, task: Task, examples: ExampleSet, labels: np.ndarray) -> dict[str, float]:
        """Probe accuracy (%) on `model`'s embeddings: image, text and their mean."""
        img, txt = unimodal_embeddings(model, task, examples)
        a_img = 100 * float((self.image_probe.predict(img) == labels).mean())
        a_txt = 100 * float((self.text_probe.predict(txt) == labels).mean())
        return {"probe_image": a_img, "probe_text": a_txt, "probe_acc": (a_img + a_txt) / 2}


SCENE_ATTRIBUTES = ("top_left_colour", "n_objects", "shapes")
HPO_ATTRIBUTES = ("organ", "branch")


def scene_labels(task: Task, examples: ExampleSet, attribute: str = "top_left_colour") -> np.ndarray:
    """A property of each example's (first) scene that both its image and its text reveal.

    `top_left_colour`: the colour of the object in the top-left quadrant, or "none" (9 classes);
    `n_objects`: how many objects the scene holds; `shapes`: the shape of the first object.
    """
    world = getattr(task, "world", None)
    if world is None:
        raise ValueError(f"scene labels need a task on the scene world; {task.name!r} has none")
    if attribute not in SCENE_ATTRIBUTES:
        raise ValueError(f"unknown attribute {attribute!r}; use {', '.join(SCENE_ATTRIBUTES)}")
    index = examples.fields["image_index"]
    index = index[:, 0] if index.dim() > 1 else index
    out = []
    for i in index.tolist():
        scene = world.scenes[i]
        if attribute == "top_left_colour":
            obj = scene.at("top left")
            out.append(obj.colour if obj else "none")
        elif attribute == "n_objects":
            out.append(str(len(scene.objects)))
        else:  # "shapes"
            out.append(scene.objects[0].shape)
    return np.asarray(out)


def hpo_labels(task: Task, examples: ExampleSet, attribute: str = "organ") -> np.ndarray:
    """The HPO subtree of each graph-text example's phenotype, which its sentence names and its subgraph
    holds (the target phenotype and its ontology neighbours).

    `organ`: "ear" or "eye" (the extract's two roots, Abnormality of the ear / of the eye);
    `branch`: the child of that root the phenotype descends from (e.g. "abnormal eye physiology";
    a phenotype under two children gets both names joined by " + ").
    """
    data = getattr(task, "data", None)
    if data is None or not hasattr(data, "extract"):
        raise ValueError(f"HPO labels need the graph-text task; {task.name!r} has no HPO extract")
    if attribute not in HPO_ATTRIBUTES:
        raise ValueError(f"unknown attribute {attribute!r}; use {' or '.join(HPO_ATTRIBUTES)}")
    x = data.extract
    roots = {x.index(r): r for r in _hpo_roots(x)}
    parents: dict[int, list[int]] = {}
    for child, parent in x.is_a.tolist():
        parents.setdefault(child, []).append(parent)

    @lru_cache(maxsize=None)
    def ancestors(term: int) -> frozenset:
        return frozenset({term}).union(*(ancestors(p) for p in parents.get(term, [])))

    row_of = {int(r): i for i, r in enumerate(data.rows)}
    out = []
    for relation in examples.fields["relation"].tolist():
        phenotype = int(data.relations[row_of[relation], 1])
        up = ancestors(phenotype)
        if attribute == "organ":
            names = sorted(x.names[r].lower().replace("abnormality of the ", "") for r in roots if r in up)
        else:
            names = sorted(x.names[a].lower() for a in up if any(p in roots for p in parents.get(a, [])))
        out.append(" + ".join(names) or "none")
    return np.asarray(out)


def _hpo_roots(extract) -> tuple[str, ...]:
    from .data.hpo import DEFAULT_ROOTS

    return tuple(extract.metadata.get("build", {}).get("roots", DEFAULT_ROOTS))


def probe_labels(task: Task, examples: ExampleSet, attribute: str | None = None) -> np.ndarray:
    """Labels (N,) for the unimodal probes of any task: scene facts for the image tasks (default
    `top_left_colour`), the phenotype's HPO subtree for graph-text (default `organ`)."""
    if getattr(task, "world", None) is not None:
        return scene_labels(task, examples, attribute or "top_left_colour")
    if getattr(getattr(task, "data", None), "extract", None) is not None:
        return hpo_labels(task, examples, attribute or "organ")
    raise ValueError(f"no probe labels are defined for task {task.name!r}: the probes need a property that both "
                     f"modalities reveal (scene facts for the scene world, HPO subtrees for graph-text); "
                     f"pass labels to UnimodalProbe.fit yourself")
