"""NLVR2 (a statement about a pair of photographs, true or false): its JSON-lines files + images.

Files `train.json`, `dev.json`, `test1.json` (in the folder or its `data/`, as in the official
repository's `nlvr2/data/`), one JSON object per line with at least `identifier` (e.g.
"dev-850-0-0": split-set-pair-sentence), `sentence` and `label` ("True" / "False"). As in the
official repository, the two images of an example are `<identifier without its last part>-img0.png`
(left) and `-img1.png` (right); they are looked up in `images/<split>/` (train images in the
numbered sub-folder given by the `directory` field) or anywhere under the image folder.

Deletion unit: NLVR2 writes several statements about one pair, and one photograph can appear in
several pairs (as different files; its identity is then its `left_url` / `right_url`, else its
file name). The unit is a connected component of the graph whose nodes are photographs and whose
edges are the examples' (left, right) pairs: deleting a unit removes every example that shows any
of its photographs, so no deleted photograph stays in D_r. The bank holds one image per photograph.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..reasoning import NLVR_LABELS
from .base import (DatasetFormatError, RealData, check_images_exist, check_splits, image_index_of_files,
                   missing_root, read_json_lines, require_keys)

FILES = {"train": "train.json", "val": "dev.json", "test": "test1.json"}
HOW = ("get NLVR2's train.json, dev.json and test1.json (https://github.com/lil-lab/nlvr, nlvr2/data/) and its images "
       "(by request: https://lil.nlp.cornell.edu/nlvr/) and pass the folder holding the json files (images in its "
       "images/ or passed as image_dir=)")
FORMAT = ('one JSON object per line such as {"identifier": "dev-850-0-0", "sentence": "...", "label": "True"} '
          '(images dev-850-0-img0.png and dev-850-0-img1.png)')
LABELS = {"true": 1, "false": 0}


def image_names(identifier: str) -> tuple[str, str]:
    """(left, right) image file names of an example, as in the official repository."""
    stem = identifier.rsplit("-", 1)[0]
    return f"{stem}-img0.png", f"{stem}-img1.png"


def find_files(root: Path) -> dict[str, Path]:
    for folder in (root, root / "data"):
        if all((folder / f).is_file() for f in FILES.values()):
            return {s: folder / f for s, f in FILES.items()}
    missing = [f for f in FILES.values() if not (root / f).is_file() and not (root / "data" / f).is_file()]
    raise FileNotFoundError(f"NLVR2: {root} lacks {', '.join(missing)}; {HOW}")


def connected_components(pairs: np.ndarray, n: int) -> np.ndarray:
    """Component id (N,) of each of `n` nodes given undirected edges `pairs` (E, 2), by union-find;
    a component is numbered by its smallest node."""
    parent = np.arange(n)

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for a, b in pairs.tolist():
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return np.asarray([find(a) for a in range(n)])


def read_nlvr2(root, *, image_dir=None) -> RealData:
    """NLVR2 as `RealData` (texts = statements, label 1 = true, image_index (N, 2), unit = image component)."""
    root = Path(root)
    if not root.is_dir():
        raise missing_root("NLVR2", root, HOW)
    files = find_files(root)
    image_root = Path(image_dir) if image_dir is not None else (root / "images" if (root / "images").is_dir() else root)
    if not image_root.is_dir():
        raise FileNotFoundError(f"image folder {image_root} not found; pass the folder of the NLVR2 images")
    texts, labels, split, example_id, wanted, keys, identifiers = [], [], [], [], [], [], []
    row_id = 0
    for s, path in files.items():
        for n, rec in enumerate(read_json_lines(path), 1):
            require_keys(rec, ("identifier", "sentence", "label"), f"{path}, line {n}", FORMAT)
            label = LABELS.get(str(rec["label"]).strip().lower())
            if label is None or str(rec["identifier"]).count("-") < 3:
                bad = "label" if label is None else "identifier"
                raise DatasetFormatError(f"{path}, line {n}: unexpected {bad} {rec[bad]!r}; expected {FORMAT}")
            folder = image_root / path.stem
            if "directory" in rec:
                folder = folder / str(rec["directory"])
            files_ = [folder / name for name in image_names(str(rec["identifier"]))]
            wanted.append(files_)
            # a photograph's identity: its URL when given (NLVR2 reuses photographs across pairs), else its file
            keys.append([rec.get(f"{side}_url") or f.name for side, f in zip(("left", "right"), files_)])
            texts.append(str(rec["sentence"]).strip())
            labels.append(label)
            split.append(s)
            example_id.append(row_id)
            identifiers.append(str(rec["identifier"]))
            row_id += 1
    if not texts:
        raise DatasetFormatError(f"the NLVR2 files under {root} hold no example; expected {FORMAT}")
    check_splits("NLVR2", split, {s: f"{p.name} holds no example" for s, p in files.items()})
    wanted = _resolve(wanted, image_root)
    first_file: dict[str, Path] = {}
    for pair_keys, pair_files in zip(keys, wanted):
        for k, f in zip(pair_keys, pair_files):
            first_file.setdefault(k, f)
    distinct = sorted(first_file)
    row = {k: i for i, k in enumerate(distinct)}
    image_index = np.asarray([[row[a], row[b]] for a, b in keys], dtype=np.int64)
    sources = [first_file[k] for k in distinct]
    check_images_exist(sources, "NLVR2", image_root, "pass the folder of the NLVR2 images as image_dir=")
    component = connected_components(image_index, len(sources))
    unit = component[image_index[:, 0]]
    assert (unit == component[image_index[:, 1]]).all()
    assert NLVR_LABELS[1] == "true"
    return RealData("nlvr2", texts, np.asarray(labels, dtype=np.int64), image_index, unit.astype(np.int64),
                    np.asarray(example_id, dtype=np.int64), np.asarray(split), sources,
                    info={"identifiers": identifiers, "images": distinct, "source": str(root)})


def _resolve(wanted: list[list[Path]], image_root: Path) -> list[list[Path]]:
    """The expected paths, or for those missing the file of the same name anywhere under `image_root`."""
    if all(p.is_file() for pair in wanted for p in pair):
        return wanted
    index = image_index_of_files(image_root)
    return [[p if p.is_file() else index.get(p.name, p) for p in pair] for pair in wanted]
