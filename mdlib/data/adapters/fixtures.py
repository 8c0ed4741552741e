"""Tiny datasets in the real formats, for tests and for trying the real-data path offline.

`write_fixture(name, folder)` writes a few small images and the annotation files of Flickr30K
(Karpathy JSON, or a `datasets` folder with `flickr30k-datasets`), SNLI-VE, NLVR2 or PGR in
exactly the layout `load_real_task` expects, and returns the folder to pass it. The texts are
made up; only the formats are real.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

WORDS = ("dog", "man", "woman", "child", "ball", "street", "red", "blue", "runs", "sits", "park", "car")


def _image(path: Path, rng: np.random.Generator, size=(24, 20)) -> None:
    """A small non-square image: a coloured background with a rectangle of another colour."""
    from PIL import Image

    arr = np.empty((size[1], size[0], 3), dtype=np.uint8)
    arr[:] = rng.integers(0, 256, 3)
    x, y = rng.integers(0, size[0] // 2), rng.integers(0, size[1] // 2)
    arr[y:y + size[1] // 2, x:x + size[0] // 2] = rng.integers(0, 256, 3)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def _sentence(rng: np.random.Generator, tag: str) -> str:
    return " ".join(rng.choice(WORDS, 5)) + f" {tag}."


def write_fixture(name: str, folder, seed: int = 0) -> Path:
    """Write the fixture of `name` (flickr30k, flickr30k-datasets, snli-ve, nlvr2, pgr) under `folder`."""
    writers = {"flickr30k": flickr30k, "flickr30k-datasets": flickr30k_datasets, "snli-ve": snli_ve,
               "nlvr2": nlvr2, "pgr": pgr}
    if name not in writers:
        raise ValueError(f"unknown fixture {name!r}; choose one of {', '.join(writers)}")
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    writers[name](root, np.random.default_rng(seed))
    return root


FLICKR_SPLITS = ["train"] * 7 + ["restval"] + ["val"] * 3 + ["test"] * 3


def flickr30k(root: Path, rng: np.random.Generator, captions: int = 3) -> None:
    """dataset_flickr30k.json (Karpathy) + flickr30k-images/: 14 images (8 train incl. 1 restval, 3 val, 3 test)."""
    images = []
    for i, split in enumerate(FLICKR_SPLITS):
        name = f"{1000 + i}.jpg"
        _image(root / "flickr30k-images" / name, rng)
        images.append({"filename": name, "imgid": i, "split": split,
                       "sentids": list(range(i * captions, (i + 1) * captions)),
                       "sentences": [{"raw": _sentence(rng, f"img{i}"), "tokens": [], "imgid": i,
                                      "sentid": i * captions + k} for k in range(captions)]})
    (root / "dataset_flickr30k.json").write_text(json.dumps({"images": images, "dataset": "flickr30k"}))


def flickr30k_datasets(root: Path, rng: np.random.Generator, captions: int = 3) -> None:
    """A `datasets` folder (save_to_disk) shaped like nlphuji/flickr30k: image, caption (list), split, filename."""
    import datasets
    from PIL import Image

    tmp = root / "_images"
    rows = {"image": [], "caption": [], "split": [], "filename": []}
    for i, split in enumerate(FLICKR_SPLITS):
        path = tmp / f"{2000 + i}.jpg"
        _image(path, rng)
        rows["image"].append(Image.open(path).copy())
        rows["caption"].append([_sentence(rng, f"img{i}") for _ in range(captions)])
        rows["split"].append("train" if split == "restval" else split)
        rows["filename"].append(path.name)
    features = datasets.Features({"image": datasets.Image(), "caption": datasets.Sequence(datasets.Value("string")),
                                  "split": datasets.Value("string"), "filename": datasets.Value("string")})
    datasets.DatasetDict({"test": datasets.Dataset.from_dict(rows, features=features)}).save_to_disk(str(root / "hf"))
    for p in tmp.iterdir():
        p.unlink()
    tmp.rmdir()


SNLI_LABELS = ("entailment", "neutral", "contradiction")


def snli_ve(root: Path, rng: np.random.Generator) -> None:
    """snli_ve_{train,dev,test}.jsonl + flickr30k-images/: 6 / 2 / 2 images, 3 hypotheses each (one per
    label), plus one train row with gold_label "-" (skipped)."""
    counts = {"train": 6, "dev": 2, "test": 2}
    image_id = 3000
    for split, n in counts.items():
        lines = []
        for _ in range(n):
            _image(root / "flickr30k-images" / f"{image_id}.jpg", rng)
            premise = _sentence(rng, f"img{image_id}")
            for k, label in enumerate(SNLI_LABELS):
                lines.append({"Flickr30K_ID": str(image_id), "captionID": f"{image_id}.jpg#0",
                              "pairID": f"{image_id}.jpg#0r{k}",
                              "gold_label": label, "sentence1": premise, "sentence2": _sentence(rng, label)})
            image_id += 1
        if split == "train":
            lines.append({"Flickr30K_ID": str(image_id - 1), "gold_label": "-", "sentence1": "x", "sentence2": "y"})
        (root / f"snli_ve_{split}.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))


def nlvr2(root: Path, rng: np.random.Generator) -> None:
    """train.json, dev.json, test1.json + images/<split>/ (train in numbered sub-folders).

    Train: sets 0-3, one pair each, two statements per pair; sets 0 and 1 share a photograph
    (the same right_url), so their examples form one deletion unit. Dev and test: two pairs each.
    """
    layout = {"train": 4, "dev": 2, "test1": 2}
    for split, n_pairs in layout.items():
        lines = []
        for s in range(n_pairs):
            stem = f"{split}-{s}-0"
            directory = s % 2
            folder = root / "images" / split / (str(directory) if split == "train" else "")
            for side in (0, 1):
                _image(folder / f"{stem}-img{side}.png", rng)
            right = "http://img/shared.jpg" if split == "train" and s in (0, 1) else f"http://img/{stem}-1.jpg"
            for k in range(2):
                rec = {"identifier": f"{stem}-{k}", "sentence": _sentence(rng, f"pair{s}"),
                       "label": "True" if k == 0 else "False", "left_url": f"http://img/{stem}-0.jpg",
                       "right_url": right, "synset": "n0", "query": "q", "writer": "w", "extra_validations": {}}
                if split == "train":
                    rec["directory"] = directory
                lines.append(rec)
        (root / f"{split}.json").write_text("".join(json.dumps(x) + "\n" for x in lines))


PGR_HEADER = ["FILE_ID", "SENTENCE", "GENE", "PHENOTYPE", "GENE_ID", "PHENOTYPE_ID", "GENE_START_POSITION",
              "GENE_END_POSITION", "PHENOTYPE_START_POSITION", "PHENOTYPE_END_POSITION", "RELATION"]
PGR_TEST_EXTRA = "CONFIRMATION (CORRECT(C) | INCORRECT(I) | UNCERTAIN(U))"


def _known_pairs(n: int) -> list[tuple[str, str, str, str]]:
    """n relations of the embedded HPO extract: (gene number, HP_ id, gene symbol, phenotype name)."""
    from ..hpo import default_extract_dir

    out = []
    with open(default_extract_dir() / "relations.tsv", encoding="utf-8") as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            out.append((row["gene"].split(":")[1], row["phenotype"].replace(":", "_"), row["gene_symbol"],
                        row["phenotype_name"].lower()))
            if len(out) == n:
                break
    return out


def pgr(root: Path, rng: np.random.Generator) -> None:
    """train.tsv (with a header, 11 columns) and test.tsv (header with CONFIRMATION): 10 train relations
    (4 from the HPO extract, 6 unknown to it), two sentences each; 4 test relations, with C / I / U."""
    known = _known_pairs(6)
    unknown = [(str(900000 + i), f"HP_99{i:05d}", f"GENE{i}", f"odd phenotype {i}") for i in range(8)]
    train_pairs, test_pairs = known[:4] + unknown[:6], known[4:] + unknown[6:]

    def row(file_id, pair, k, label, extra=()):
        gene_id, hp, gene, phen = pair
        prefix = "In addition, " if k else ""
        sentence = f"{prefix}mutations in {gene} were found &lt;here&gt; in patients with {phen}."
        gs = sentence.index(gene)
        ps = sentence.index(phen)
        return [str(file_id), sentence, gene, phen, gene_id, hp, gs, gs + len(gene), ps, ps + len(phen), label, *extra]

    with open(root / "train.tsv", "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, delimiter="\t", lineterminator="\n", quoting=csv.QUOTE_NONE, escapechar="\\")
        w.writerow(PGR_HEADER)
        for i, pair in enumerate(train_pairs):
            for k in range(2):
                w.writerow(row(100 + i, pair, k, "True" if i % 2 == 0 else "False"))
    with open(root / "test.tsv", "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, delimiter="\t", lineterminator="\n", quoting=csv.QUOTE_NONE, escapechar="\\")
        w.writerow(PGR_HEADER + [PGR_TEST_EXTRA])
        for i, pair in enumerate(test_pairs):
            for k, conf in enumerate("CI" if i < 3 else "CU"):
                w.writerow(row(200 + i, pair, k, "TRUE" if i % 2 == 0 else "FALSE", [conf]))
