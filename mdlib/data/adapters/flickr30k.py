"""Flickr30K for image-text retrieval: the Karpathy split JSON + image folder, or a `datasets` dataset.

Two sources:

* a folder holding `dataset_flickr30k.json` (Karpathy's splits: {"images": [{"filename",
  "split": train / val / test / restval, "sentences": [{"raw": ...}, ...]}, ...]}) and the images
  (in `flickr30k-images/`, `flickr30k_images/`, `images/` or the folder itself);
* a `datasets` dataset: a folder written by `save_to_disk`, or a hub id such as
  "nlphuji/flickr30k" (needs network), with an `image` column (or `filename` + `image_dir`), a
  caption column `caption` / `captions` / `sentences` (a string or a list of strings) and a
  `split` column (else the dataset's own split names).

One example per caption; the deletion unit is the image (all its captions leave together).
"restval" counts as train.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np

from .base import DatasetFormatError, RealData, check_images_exist, check_splits, missing_root, require_keys

KARPATHY_FILE = "dataset_flickr30k.json"
IMAGE_FOLDERS = ("flickr30k-images", "flickr30k_images", "images", "Images")
SPLIT_NAMES = {"train": "train", "restval": "train", "val": "val", "validation": "val", "dev": "val", "test": "test"}
CAPTION_COLUMNS = ("caption", "captions", "sentences", "text")
HOW = ("download the Flickr30K images (https://shannon.cs.illinois.edu/DenotationGraph/, on request) and "
       "Karpathy's split file dataset_flickr30k.json (caption_datasets.zip, "
       "https://cs.stanford.edu/people/karpathy/deepimagesent/) and pass the folder holding both; or pass a "
       "`datasets` folder (save_to_disk) or hub id such as 'nlphuji/flickr30k'")
KARPATHY_FORMAT = ('Karpathy\'s format {"images": [{"filename": "1000092795.jpg", "split": "train", '
                   '"sentences": [{"raw": "Two young guys ..."}, ...]}, ...]}')


def find_image_folder(root: Path, image_dir=None) -> Path:
    if image_dir is not None:
        folder = Path(image_dir)
        if not folder.is_dir():
            raise FileNotFoundError(f"image folder {folder} not found; pass the folder of the Flickr30K images")
        return folder
    for name in IMAGE_FOLDERS:
        if (root / name).is_dir():
            return root / name
    return root


def read_flickr30k(root_or_id, *, image_dir=None) -> RealData:
    """Flickr30K captions as `RealData` (texts = captions, label 1, unit = the image)."""
    root = Path(root_or_id)
    if root.is_file() and root.suffix == ".json":
        return read_karpathy(root, find_image_folder(root.parent, image_dir))
    if root.is_dir():
        if (root / KARPATHY_FILE).is_file():
            return read_karpathy(root / KARPATHY_FILE, find_image_folder(root, image_dir))
        if any((root / f).is_file() for f in ("dataset_dict.json", "state.json", "dataset_info.json")):
            return read_hf(load_datasets_source(str(root), local=True), image_dir)
        raise FileNotFoundError(f"{root} holds neither {KARPATHY_FILE} nor a `datasets` folder (save_to_disk); {HOW}")
    if _looks_like_hub_id(root_or_id):
        return read_hf(load_datasets_source(root_or_id, local=False), image_dir)
    raise missing_root("Flickr30K", root_or_id, HOW)


def _looks_like_hub_id(source) -> bool:
    """True for "owner/name" that is not a local path: a missing path whose first folder exists here (say
    "data/flikr30k" with a data/ folder) is a mistyped local path, refused before any hub look-up."""
    if not isinstance(source, str) or source.count("/") != 1 or source.startswith((".", "/", "~")):
        return False
    owner = Path(source.split("/")[0])
    if owner.is_dir():
        raise FileNotFoundError(f"Flickr30K: the local folder {Path(source).resolve()} does not exist ({owner}/ does, "
                                f"so this looks like a mistyped local path rather than a hub id); check the path, or "
                                f"run from a folder without a {owner}/ sub-folder to use the hub id {source!r}")
    return True


def read_karpathy(path: Path, image_folder: Path) -> RealData:
    try:
        blob = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DatasetFormatError(f"{path} is not valid JSON ({e.msg}); expected {KARPATHY_FORMAT}") from None
    if not isinstance(blob, dict) or not isinstance(blob.get("images"), list):
        raise DatasetFormatError(f"{path} has no list under the key 'images'; expected {KARPATHY_FORMAT}")
    texts, image_index, split, example_id, sources = [], [], [], [], []
    for i, img in enumerate(blob["images"]):
        require_keys(img, ("filename", "split", "sentences"), f"{path}, images[{i}]", KARPATHY_FORMAT)
        s = SPLIT_NAMES.get(img["split"])
        if s is None:
            raise DatasetFormatError(f"{path}, images[{i}]: unknown split {img['split']!r}; expected one of "
                                     f"{', '.join(SPLIT_NAMES)}")
        ids = img.get("sentids") or [None] * len(img["sentences"])
        for k, sent in enumerate(img["sentences"]):
            require_keys(sent, ("raw",), f"{path}, images[{i}].sentences[{k}]", KARPATHY_FORMAT)
            texts.append(sent["raw"].strip())
            image_index.append(i)
            split.append(s)
            example_id.append(ids[k] if k < len(ids) and ids[k] is not None else len(example_id))
        sources.append(image_folder / img["filename"])
    if not texts:
        raise DatasetFormatError(f"{path} lists no captions; expected {KARPATHY_FORMAT}")
    check_splits("Flickr30K", split, f"{path.name} puts no image with captions in it")
    check_images_exist(sources, "Flickr30K", image_folder, "put the images next to the JSON (flickr30k-images/) "
                       "or pass image_dir=")
    image_index = np.asarray(image_index, dtype=np.int64)
    return RealData("flickr30k", texts, np.ones(len(texts), dtype=np.int64), image_index, image_index.copy(),
                    _unique_ids(example_id), np.asarray(split), sources,
                    info={"filenames": [img["filename"] for img in blob["images"]], "source": str(path)})


def _unique_ids(ids: list) -> np.ndarray:
    arr = np.asarray(ids, dtype=np.int64)
    return arr if len(np.unique(arr)) == len(arr) else np.arange(len(arr))


def load_datasets_source(source: str, local: bool):
    """A `datasets` Dataset or DatasetDict from a save_to_disk folder or a hub id."""
    import datasets

    if not local:  # say so first: a hub look-up can take a while to fail without network
        warnings.warn(f"no local folder {Path(source).resolve()}; looking up {source!r} on the Hugging Face hub",
                      stacklevel=3)
    try:
        return datasets.load_from_disk(source) if local else datasets.load_dataset(source)
    except FileNotFoundError as e:
        if local:
            raise
        raise FileNotFoundError(f"no local folder {Path(source).resolve()}, and no hub dataset {source!r} ({e}); "
                                f"check the path, or {HOW}") from e
    except Exception as e:  # no network, unknown id, ...
        where = "" if local else f"there is no local folder {Path(source).resolve()}, and "
        raise FileNotFoundError(f"{where}could not load the `datasets` dataset {source!r} ({type(e).__name__}: {e}); "
                                f"{HOW}") from e


def read_hf(ds, image_dir=None) -> RealData:
    """Flickr30K from a `datasets` Dataset / DatasetDict (one row per image, a list of captions)."""
    import datasets

    parts = list(ds.items()) if isinstance(ds, datasets.DatasetDict) else [(None, ds)]
    texts, image_index, split, example_id, sources, names, files = [], [], [], [], [], [], []
    for part_name, part in parts:
        cols = set(part.column_names)
        cap_col = next((c for c in CAPTION_COLUMNS if c in cols), None)
        expected = ("a caption column (caption / captions / sentences: a string or a list of strings), an 'image' "
                    "column (or 'filename' with image_dir=) and a 'split' column (or DatasetDict split names)")
        if cap_col is None:
            raise DatasetFormatError(f"the `datasets` Flickr30K{'' if part_name is None else f' split {part_name!r}'} "
                                     f"has columns {sorted(cols)}: no caption column; expected {expected}")
        if "image" not in cols and not ("filename" in cols and image_dir is not None):
            raise DatasetFormatError(f"the `datasets` Flickr30K has columns {sorted(cols)}: no 'image' column "
                                     f"(nor 'filename' with image_dir=); expected {expected}")
        if "split" not in cols and part_name is None:
            raise DatasetFormatError(f"the `datasets` Flickr30K has columns {sorted(cols)}: no 'split' column "
                                     f"and no split names; expected {expected}")
        light = part.remove_columns([c for c in ("image",) if c in cols])  # read text columns without decoding
        for r, row in enumerate(light):
            raw_split = row["split"] if "split" in cols else part_name
            s = SPLIT_NAMES.get(str(raw_split))
            if s is None:
                raise DatasetFormatError(f"Flickr30K row {r}: unknown split {raw_split!r}; expected one of "
                                         f"{', '.join(SPLIT_NAMES)}")
            caps = row[cap_col]
            caps = [caps] if isinstance(caps, str) else list(caps)
            caps = [c["raw"] if isinstance(c, dict) else c for c in caps]
            i = len(sources)
            for c in caps:
                texts.append(str(c).strip())
                image_index.append(i)
                split.append(s)
                example_id.append(len(example_id))
            names.append(row.get("filename", f"{part_name or 'rows'}/{r}"))
            if "image" in cols:
                sources.append(_RowImage(part, r))
            else:
                sources.append(Path(image_dir) / row["filename"])
                files.append(sources[-1])
    if not texts:
        raise DatasetFormatError("the `datasets` Flickr30K holds no captions")
    check_splits("Flickr30K", split, "no row of the `datasets` dataset has that split")
    if files:
        check_images_exist(files, "Flickr30K", Path(image_dir), "pass the folder of the images as image_dir=")
    image_index = np.asarray(image_index, dtype=np.int64)
    return RealData("flickr30k", texts, np.ones(len(texts), dtype=np.int64), image_index, image_index.copy(),
                    np.asarray(example_id, dtype=np.int64), np.asarray(split), sources,
                    info={"filenames": names, "source": "datasets"})


class _RowImage:
    """The decoded `image` of one row of a `datasets` Dataset (read when the bank asks for it)."""

    def __init__(self, dataset, row: int):
        self.dataset, self.row = dataset, row

    def __call__(self):
        return self.dataset[self.row]["image"]

    def __repr__(self) -> str:  # names the image in cache keys
        return f"datasets:{getattr(self.dataset, '_fingerprint', '?')}:{self.row}"
