"""SNLI-VE (visual entailment): its JSON-lines files + the Flickr30K images.

Files `snli_ve_train.jsonl`, `snli_ve_dev.jsonl`, `snli_ve_test.jsonl` (in the folder or its
`data/`), one JSON object per line with at least `Flickr30K_ID` (the premise image, `<id>.jpg`),
`sentence2` (the hypothesis) and `gold_label` (entailment / neutral / contradiction, in any case;
rows labelled "-" (no consensus, as in SNLI) are skipped and counted in `info["skipped"]`; other
labels are refused when they are more than `UNKNOWN_SHARE` of a file's rows, else skipped and
counted in `info["unknown_labels"]`). `sentence1` (the premise: a
Flickr30K caption of the image) is optional; when every image has one, the distinct premises of
each image become its descriptions (used by the auxiliary image-text loss of the statement tasks).

The deletion unit is the premise image: all hypotheses about a deleted image leave together.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..reasoning import ENTAILMENT_LABELS
from .base import (DatasetFormatError, RealData, check_images_exist, check_splits, missing_root, read_json_lines,
                   require_keys)

FILES = {"train": "snli_ve_train.jsonl", "val": "snli_ve_dev.jsonl", "test": "snli_ve_test.jsonl"}
IMAGE_FOLDERS = ("flickr30k-images", "flickr30k_images", "Flickr30K/flickr30k_images", "Flickr30K/flickr30k-images",
                 "Flickr30K", "images")
HOW = ("get SNLI-VE's snli_ve_{train,dev,test}.jsonl (https://github.com/necla-ml/SNLI-VE, built from SNLI 1.0) and "
       "the Flickr30K images (https://shannon.cs.illinois.edu/DenotationGraph/) and pass the folder holding the "
       "jsonl files (images in its flickr30k-images/ or passed as image_dir=)")
FORMAT = ('one JSON object per line such as {"Flickr30K_ID": "3416050480", "sentence1": "...", '
          '"sentence2": "A man is sleeping.", "gold_label": "contradiction"}')
DESCRIPTIONS_PER_IMAGE = 3
NO_LABEL = ("-", "")  # SNLI's marks for a pair without a consensus label
UNKNOWN_SHARE = 0.01  # the largest share of a file's rows with an unknown label that is skipped, not refused


def find_files(root: Path) -> dict[str, Path]:
    for folder in (root, root / "data"):
        if all((folder / f).is_file() for f in FILES.values()):
            return {s: folder / f for s, f in FILES.items()}
    missing = [f for f in FILES.values() if not (root / f).is_file() and not (root / "data" / f).is_file()]
    raise FileNotFoundError(f"SNLI-VE: {root} lacks {', '.join(missing)}; {HOW}")


def find_image_folder(root: Path, first_file: str, image_dir=None) -> Path:
    if image_dir is not None:
        if not Path(image_dir).is_dir():
            raise FileNotFoundError(f"image folder {image_dir} not found; pass the folder of the Flickr30K images")
        return Path(image_dir)
    for name in IMAGE_FOLDERS:
        if (root / name / first_file).is_file():
            return root / name
    if (root / first_file).is_file():
        return root
    raise FileNotFoundError(f"SNLI-VE: no Flickr30K image folder under {root} holds {first_file} (looked in "
                            f"{', '.join(IMAGE_FOLDERS)}); pass the folder of the Flickr30K images as image_dir=")


def read_snli_ve(root, *, image_dir=None) -> RealData:
    """SNLI-VE as `RealData` (texts = hypotheses, label = ENTAILMENT_LABELS index, unit = the Flickr30K image)."""
    root = Path(root)
    if not root.is_dir():
        raise missing_root("SNLI-VE", root, HOW)
    files = find_files(root)
    texts, labels, split, example_id, image_ids = [], [], [], [], []
    premises: dict[int, list[str]] = {}
    skipped, row_id, unknown_total, reasons = 0, 0, 0, {}
    for s, path in files.items():
        records = read_json_lines(path)
        unknown = _check_labels(records, path)
        unknown_total += unknown
        reasons[s] = (f"all {len(records)} rows of {path.name} lack a known gold_label" if records
                      else f"{path.name} holds no row")
        for n, rec in enumerate(records, 1):
            require_keys(rec, ("Flickr30K_ID", "sentence2", "gold_label"), f"{path}, line {n}", FORMAT)
            row_id += 1
            label = _label(rec["gold_label"])
            if label not in ENTAILMENT_LABELS:
                skipped += label in NO_LABEL
                continue
            try:
                image = int(str(rec["Flickr30K_ID"]).split(".")[0])
            except ValueError:
                raise DatasetFormatError(f"{path}, line {n}: Flickr30K_ID {rec['Flickr30K_ID']!r} is not a number; "
                                         f"expected {FORMAT}") from None
            texts.append(str(rec["sentence2"]).strip())
            labels.append(ENTAILMENT_LABELS.index(label))
            split.append(s)
            example_id.append(row_id - 1)
            image_ids.append(image)
            if rec.get("sentence1"):
                known = premises.setdefault(image, [])
                if rec["sentence1"] not in known:
                    known.append(str(rec["sentence1"]).strip())
    if not texts:
        raise DatasetFormatError(f"SNLI-VE files under {root} hold no labelled example; expected {FORMAT}")
    check_splits("SNLI-VE", split, reasons)
    distinct, image_index = np.unique(np.asarray(image_ids), return_inverse=True)
    folder = find_image_folder(root, f"{distinct[0]}.jpg", image_dir)
    sources = [folder / f"{i}.jpg" for i in distinct]
    check_images_exist(sources, "SNLI-VE", folder, "SNLI-VE's images are the Flickr30K images; pass their folder as "
                       "image_dir=")
    descriptions = None
    if all(int(i) in premises for i in distinct):  # every image has a premise: use them as descriptions
        descriptions = [_fixed_count(premises.get(int(i), []), DESCRIPTIONS_PER_IMAGE) for i in distinct]
    image_index = image_index.astype(np.int64).reshape(-1)
    return RealData("snli-ve", texts, np.asarray(labels, dtype=np.int64), image_index,
                    np.asarray(image_ids, dtype=np.int64), np.asarray(example_id, dtype=np.int64), np.asarray(split),
                    sources, descriptions, info={"skipped": skipped, "unknown_labels": unknown_total,
                                                 "flickr30k_ids": distinct, "source": str(root)})


def _fixed_count(texts: list[str], k: int) -> list[str]:
    """Exactly k texts: the first k, repeated cyclically when fewer."""
    return [texts[i % len(texts)] for i in range(k)]


def _label(value) -> str:
    """A gold label in SNLI's lower case ("Entailment" -> "entailment")."""
    return str(value).strip().lower()


def _check_labels(records: list[dict], path: Path) -> int:
    """How many rows of a file carry a label that is neither a class nor "-"; refused above UNKNOWN_SHARE."""
    bad = [rec.get("gold_label") for rec in records
           if "gold_label" in rec and _label(rec["gold_label"]) not in (*ENTAILMENT_LABELS, *NO_LABEL)]
    if bad and len(bad) > UNKNOWN_SHARE * len(records):
        shown = ", ".join(repr(b) for b in list(dict.fromkeys(map(str, bad)))[:3])
        raise DatasetFormatError(f"{path}: {len(bad)} of {len(records)} rows have an unknown gold_label "
                                 f"(e.g. {shown}); "
                                 f"expected {', '.join(ENTAILMENT_LABELS)} (any case) or '-' for no consensus: "
                                 f"fix the file, or drop those rows")
    return len(bad)
