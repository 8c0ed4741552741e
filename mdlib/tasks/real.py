"""Tasks on real datasets: `load_real_task("flickr30k", "/data/flickr30k")` and friends.

The adapters (`mdlib.data.adapters`) read a dataset's published files; this module tokenises the
texts, builds the image bank (or the graphs), splits the examples by the dataset's own splits and
returns the same Task classes as the embedded default: Flickr30K -> RetrievalTask, SNLI-VE ->
EntailmentTask, NLVR2 -> NLVRTask, PGR -> GraphTextTask. Everything downstream (training,
unlearning methods, metrics, notebooks) runs unchanged. See docs/real_data.md.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from ..data.adapters import SPLITS, ImageBank, RealData, check_dataset, read_dataset, subsample
from ..data.examples import ExampleSet
from ..data.tokenizer import cached_tokenizer
from ..utils import config_hash, data_dir
from .base import Task

TASK_OF = {"flickr30k": "retrieval", "snli-ve": "entailment", "nlvr2": "nlvr", "pgr": "graph-text"}
READER_OPTIONS = {
    "flickr30k": ("image_dir",), "snli-ve": ("image_dir",), "nlvr2": ("image_dir",),
    "pgr": ("hpo_path", "confirmed_labels", "mark", "val_fraction", "max_nodes"),
}


def load_real_task(name: str, root_or_id, *, tokenizer=None, image_size: int | None = None,
                   max_examples: int | None = None, seed: int = 0, image_backbone: str | None = None,
                   text_backbone: str | None = None, model: dict | None = None, max_text_len: int | None = None,
                   vocab_size: int = 8000, preload_images: bool | None = None, cache_images: bool = True,
                   **options) -> Task:
    """A task built from a real dataset's files.

    name: "flickr30k", "snli-ve", "nlvr2" or "pgr". root_or_id: the dataset's folder (or, for
    Flickr30K, a `datasets` folder or hub id). tokenizer: None (a WordPiece trained on the training
    texts, cached under data_dir()/real/; or the text backbone's own tokenizer when `text_backbone`
    is given), a local folder / hub id for AutoTokenizer, or a tokenizer object. image_size: pixels
    of the square images (default 32 for the tiny model, or the image backbone's size).
    max_examples: keep about this many examples, drawn as whole deletion units (seeded by `seed`).
    image_backbone / text_backbone: pretrained ViT / BERT weights (local folder or hub id) put in
    the task's model config. model: other ModelConfig settings. preload_images: keep all images in
    memory as uint8 (default: when they fit in 2 GiB), else read them from disk at every batch;
    cache_images: save preloaded images under data_dir()/real/ so the next call skips decoding.
    options: per dataset, image_dir= (image tasks); hpo_path=, confirmed_labels=, mark=,
    val_fraction=, max_nodes= (PGR).
    """
    key = check_dataset(name)
    unknown = set(options) - set(READER_OPTIONS[key])
    if unknown:
        raise TypeError(f"unknown option(s) {sorted(unknown)} for {key}; valid: {', '.join(READER_OPTIONS[key])}")
    if key == "pgr":
        options["seed"] = seed
    data = subsample(read_dataset(key, root_or_id, **options), max_examples, seed)
    empty = [s for s, n in data.counts().items() if n == 0]
    if empty:
        raise ValueError(f"{key}: the {', '.join(empty)} split(s) hold no example"
                         f"{' after subsampling: raise max_examples' if max_examples else ''}")
    defaults = _model_defaults(key, data, image_size, image_backbone, text_backbone, model, max_text_len)
    tok = _tokenizer(key, data, tokenizer, text_backbone, vocab_size)
    defaults["vocab_size"] = _vocab_size(tok, text_backbone, defaults)
    _check_config(defaults)
    source = config_hash(key, str(root_or_id), max_examples, seed, sorted((k, str(v)) for k, v in options.items()),
                         getattr(tok, "name_or_path", ""), len(tok))
    if key == "pgr":
        task = _graph_task(data, tok, defaults)
    else:
        size = defaults["image_size"]
        cache = data_dir() / "real" / f"{key}-images-{size}-{config_hash([str(s) for s in data.images], size)}.pt"
        bank = ImageBank(data.images, size, preload=preload_images, cache=cache if cache_images else None)
        task = {"flickr30k": _retrieval_task, "snli-ve": _entailment_task, "nlvr2": _nlvr_task}[key](
            data, tok, defaults, bank)
    task.source = f"{key}-{source}"  # names this data selection in checkpoint keys
    task.real = data.info
    task.texts = dict(zip(data.example_id.tolist(), data.texts))
    return task


# ---------------------------------------------------------------------------------------
# Model defaults, tokenizer
# ---------------------------------------------------------------------------------------
def _model_defaults(key: str, data: RealData, image_size, image_backbone, text_backbone, model, max_text_len) -> dict:
    from . import DEFAULT_MODEL

    defaults = dict(DEFAULT_MODEL, max_text_len=max_text_len or (128 if key == "pgr" else 64))
    if key == "pgr":
        defaults.update(modality="graph", node_features=data.info["node_features"], graph_layers=3)
        if image_backbone is not None:
            raise ValueError("PGR is graph-text: it has no image encoder; pass text_backbone= only")
    else:
        size = image_size
        if image_backbone is not None:
            vit = _backbone_config(image_backbone, "image")
            if image_size is not None and image_size != vit.image_size:
                raise ValueError(f"image_size={image_size} differs from the image backbone's {vit.image_size}; "
                                 f"leave image_size out to use the backbone's")
            size = vit.image_size
            defaults.update(image_backbone=str(image_backbone), patch_size=vit.patch_size)
        size = 32 if size is None else size
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"image_size must be a positive int, got {size!r}")
        defaults["image_size"] = size
        if image_backbone is None:
            defaults["patch_size"] = 8 if size <= 64 else 16
    if text_backbone is not None:
        bert = _backbone_config(text_backbone, "text")
        # the fusion works at the text width: take the backbone's width, heads and feed-forward size
        defaults.update(text_backbone=str(text_backbone), hidden=bert.hidden_size, heads=bert.num_attention_heads,
                        intermediate=bert.intermediate_size,
                        max_text_len=min(defaults["max_text_len"], bert.max_position_embeddings))
    defaults.update(model or {})
    return defaults


def _backbone_config(name_or_path, kind: str):
    from transformers import AutoConfig

    try:
        cfg = AutoConfig.from_pretrained(str(name_or_path))
    except Exception as e:
        raise FileNotFoundError(f"cannot read the {kind} backbone {name_or_path!r} ({type(e).__name__}: {e}); pass a "
                                f"local folder written by save_pretrained or a hub id (needs network)") from e
    wanted = ("vit",) if kind == "image" else ("bert",)
    if cfg.model_type not in wanted:
        raise ValueError(f"the {kind} backbone {name_or_path!r} is a {cfg.model_type!r} model; mdlib loads "
                         f"{' / '.join(wanted)} checkpoints as the {kind} encoder "
                         f"({'ViTModel' if kind == 'image' else 'BertModel'})")
    return cfg


def _tokenizer(key: str, data: RealData, tokenizer, text_backbone, vocab_size: int):
    if tokenizer is None and text_backbone is not None:
        tokenizer = text_backbone
    if tokenizer is None:
        texts = [t for t, s in zip(data.texts, data.split) if s == "train"]
        if data.descriptions is not None:
            texts += [d for ds in data.descriptions for d in ds]
        digest = hashlib.sha256("\n".join(texts).encode()).hexdigest()
        path = data_dir() / "real" / f"{key}-{config_hash(digest, vocab_size)}-tokenizer"
        return cached_tokenizer(texts, path, vocab_size)
    if isinstance(tokenizer, (str, Path)):
        from transformers import AutoTokenizer

        try:
            return AutoTokenizer.from_pretrained(str(tokenizer))
        except Exception as e:
            raise FileNotFoundError(f"cannot load a tokenizer from {tokenizer!r} ({type(e).__name__}: {e}); pass a "
                                    f"folder written by save_pretrained, a hub id, a tokenizer object, or None to "
                                    f"train one on the training texts") from e
    if not callable(tokenizer):
        raise TypeError(f"tokenizer must be None, a folder / hub id or a tokenizer object, "
                        f"got {type(tokenizer).__name__}")
    return tokenizer


def _vocab_size(tokenizer, text_backbone, defaults: dict) -> int:
    n = len(tokenizer)
    if text_backbone is not None:
        size = _backbone_config(text_backbone, "text").vocab_size
        if n > size:
            raise ValueError(f"the tokenizer has {n} tokens but the text backbone's embeddings only {size}; "
                             f"use the backbone's own tokenizer (tokenizer=None)")
        return size
    return n


def _check_config(defaults: dict) -> None:
    from ..models import ModelConfig

    unknown = set(defaults) - set(ModelConfig.__dataclass_fields__)
    if unknown:
        raise ValueError(f"unknown model settings {sorted(unknown)}; valid: {sorted(ModelConfig.__dataclass_fields__)}")
    ModelConfig(**defaults)  # raises a clear error for an impossible combination


def _tokenize(tokenizer, texts: list[str], max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    enc = tokenizer(list(texts), padding="max_length", truncation=True, max_length=max_len, return_tensors="pt")
    return enc["input_ids"], enc["attention_mask"]


# ---------------------------------------------------------------------------------------
# Assembling the tasks
# ---------------------------------------------------------------------------------------
def _fields(data: RealData, tokenizer, max_len: int) -> dict[str, torch.Tensor]:
    ids, mask = _tokenize(tokenizer, data.texts, max_len)
    return {"image_index": torch.as_tensor(data.image_index), "input_ids": ids, "attention_mask": mask,
            "label": torch.as_tensor(data.label), "unit": torch.as_tensor(data.unit),
            "example_id": torch.as_tensor(data.example_id)}


def _splits(everything: ExampleSet, data: RealData) -> list[ExampleSet]:
    return [everything.subset(np.flatnonzero(data.split == s), s) for s in SPLITS]


def _retrieval_task(data: RealData, tokenizer, defaults: dict, bank: ImageBank):
    from .retrieval import RetrievalTask

    everything = ExampleSet(_fields(data, tokenizer, defaults["max_text_len"]), {"image": bank}, name="all")
    return RetrievalTask(*_splits(everything, data), tokenizer=tokenizer, model_defaults=defaults)


def _statement_banks(data: RealData, tokenizer, defaults: dict, bank: ImageBank) -> dict:
    """The image bank and, when the dataset has them, the images' descriptions in StatementTask's
    layout (M, K, L)."""
    banks = {"image": bank}
    if data.descriptions is not None:
        k = len(data.descriptions[0])
        ids, mask = _tokenize(tokenizer, [d for ds in data.descriptions for d in ds], defaults["max_text_len"])
        shape = (len(data.images), k, -1)
        banks |= {"desc_input_ids": ids.view(shape), "desc_attention_mask": mask.view(shape)}
    return banks


def _statement_task(cls, data: RealData, tokenizer, defaults: dict, bank: ImageBank, template: str):
    fields = _fields(data, tokenizer, defaults["max_text_len"])
    fields["template"] = torch.zeros(len(data), dtype=torch.long)
    everything = ExampleSet(fields, _statement_banks(data, tokenizer, defaults, bank), name="all")
    task = cls(*_splits(everything, data), tokenizer=tokenizer, model_defaults=defaults)
    task.templates = (template,)
    # Auxiliary losses of the statement tasks need descriptions of the images (SNLI-VE's premises);
    # without attribute annotations, the image-conditioned MLM may mask any ordinary word (ALBEF's MLM).
    if data.descriptions is None:
        task.itc_weight = task.fused_mlm_weight = 0.0
    special = set(tokenizer.all_special_ids)
    task.attribute_ids = torch.tensor(sorted(set(tokenizer.get_vocab().values()) - special))
    return task


def _entailment_task(data: RealData, tokenizer, defaults: dict, bank: ImageBank):
    from .entailment import EntailmentTask

    return _statement_task(EntailmentTask, data, tokenizer, defaults, bank, "snli-ve")


def _nlvr_task(data: RealData, tokenizer, defaults: dict, bank: ImageBank):
    from .nlvr import NLVRTask

    task = _statement_task(NLVRTask, data, tokenizer, defaults, bank, "nlvr2")
    task.unit_name = "image component"
    task.pairs = np.unique(data.image_index, axis=0)
    return task


def _graph_task(data: RealData, tokenizer, defaults: dict):
    import pandas as pd

    from .graph_text import GraphTextTask, gather_graphs

    everything = ExampleSet(_fields(data, tokenizer, defaults["max_text_len"]), {"image": data.images}, gather_graphs,
                            name="all")
    task = GraphTextTask(*_splits(everything, data), tokenizer=tokenizer, model_defaults=defaults)
    task.unit_name = "relation"  # PGR's own relations, without the embedded extract's blocks
    rel = pd.DataFrame(data.info["relations"]).set_index("unit")
    rel = rel.loc[np.unique(data.unit)]
    by_unit = pd.DataFrame({"unit": data.unit, "label": data.label, "split": data.split})
    rel["n_sentences"] = by_unit.groupby("unit").size()
    rel["label"] = (by_unit.groupby("unit")["label"].mean() >= 0.5).astype(int)  # the majority of its sentences
    rel["split"] = by_unit.groupby("unit")["split"].agg(lambda s: "+".join(x for x in SPLITS if x in set(s)))
    task.relations = rel
    return task


__all__ = ["load_real_task", "TASK_OF"]
