"""PGR (Sousa et al., NAACL 2019: a silver-standard corpus of human phenotype-gene relations).

Files: `train.tsv` and `test.tsv` (optionally `dev.tsv`) as published in
https://github.com/lasigeBioTM/PGR (`corpora/original_corpus/`, or a later dated corpus folder),
tab-separated, one (sentence, gene, phenotype) mention pair per row. Columns, in this order when
the file has no header (a header row starting with FILE_ID is recognised and its names used):

    FILE_ID  SENTENCE  GENE  PHENOTYPE  GENE_ID  PHENOTYPE_ID  GENE_START_POSITION  GENE_END_POSITION
    PHENOTYPE_START_POSITION  PHENOTYPE_END_POSITION  RELATION  [CONFIRMATION]

GENE_ID is an NCBI Gene id (4830 or NCBIGene:4830), PHENOTYPE_ID an HPO id (HP_0002664 or
HP:0002664); anything else (swapped columns, names instead of ids) is refused, RELATION True / False (any case, or 1 / 0). The test file's curated CONFIRMATION
column (C = the silver label is correct, I = incorrect, U = uncertain) gives the gold label with
`confirmed_labels=True` (the default): I flips the label, U drops the row.

Each row becomes one example: the sentence, with the gene mention wrapped as `<< gene >>` and the
phenotype mention as `[[ phenotype ]]` (`mark_entities`), and the subgraph of the pair in the
HPO extract of `mdlib/data/hpo_extract` (`mdlib.data.hpo.SubgraphSampler`) when both entities are nodes of it,
else a two-node graph (gene, phenotype) without edges. The edge between the two entities is
removed from every subgraph (PGR's silver labels come from the HPO annotations, so that edge
would give the answer away). Deletion unit: the (gene, phenotype) relation, i.e. every sentence
about the pair. Without a `dev.tsv`, `val_fraction` of the training relations form the val split.
"""
from __future__ import annotations

import html
import re
from pathlib import Path

import numpy as np

from .base import DatasetFormatError, RealData, check_splits, missing_root, split_off

COLUMNS = ("FILE_ID", "SENTENCE", "GENE", "PHENOTYPE", "GENE_ID", "PHENOTYPE_ID", "GENE_START_POSITION",
           "GENE_END_POSITION", "PHENOTYPE_START_POSITION", "PHENOTYPE_END_POSITION", "RELATION", "CONFIRMATION")
REQUIRED = ("SENTENCE", "GENE", "PHENOTYPE", "GENE_ID", "PHENOTYPE_ID", "RELATION")
FILES = {"train": "train.tsv", "val": "dev.tsv", "test": "test.tsv"}
SUBFOLDERS = ("", "corpora/original_corpus", "original_corpus")
HOW = ("download train.tsv and test.tsv of the PGR corpus (https://github.com/lasigeBioTM/PGR, "
       "corpora/original_corpus/) and pass the folder holding them")
FORMAT = ("tab-separated columns " + " ".join(COLUMNS[:-1]) + " [CONFIRMATION], with or without a header row")
GENE_MARK, PHENOTYPE_MARK = ("<<", ">>"), ("[[", "]]")
TRUE_WORDS, FALSE_WORDS = {"true", "1", "yes"}, {"false", "0", "no"}


def find_files(root: Path) -> dict[str, Path]:
    for sub in SUBFOLDERS:
        folder = root / sub
        if (folder / FILES["train"]).is_file() and (folder / FILES["test"]).is_file():
            return {s: folder / f for s, f in FILES.items() if (folder / f).is_file()}
    raise FileNotFoundError(f"PGR: {root} lacks train.tsv and test.tsv (looked in {root} and its "
                            f"corpora/original_corpus/); {HOW}")


def read_tsv(path: Path) -> list[dict]:
    """Rows of a PGR TSV file as dicts keyed by COLUMNS (header row optional)."""
    lines = [ln.rstrip("\r\n") for ln in path.read_text(encoding="utf-8").splitlines()]
    lines = [ln for ln in lines if ln.strip()]
    if not lines:
        raise DatasetFormatError(f"{path} is empty; expected {FORMAT}")
    first = [c.strip() for c in lines[0].split("\t")]
    names = [re.split(r"[\s(]", c.upper(), maxsplit=1)[0] for c in first]
    if sum(n in COLUMNS for n in names) >= 3:  # a header row
        header, body, offset, has_header = names, lines[1:], 2, True
        missing = [c for c in REQUIRED if c not in header]
        if missing:
            raise DatasetFormatError(f"{path}: the header lacks the column(s) {', '.join(missing)}; expected {FORMAT}")
    else:
        header, body, offset, has_header = list(COLUMNS), lines, 1, False
    rows = []
    for n, line in enumerate(body, offset):
        fields = line.split("\t")
        if not has_header:
            if len(fields) not in (11, 12):
                raise DatasetFormatError(f"{path}, line {n}: {len(fields)} tab-separated fields, expected 11 or 12 "
                                         f"without a header row: {FORMAT}")
        elif len(fields) < len(header) - 1:
            raise DatasetFormatError(f"{path}, line {n}: {len(fields)} fields for a header of {len(header)}; "
                                     f"expected {FORMAT}")
        rows.append({h: f.strip() for h, f in zip(header, fields)} | {"_line": n})
    return rows


def parse_label(value: str, where: str) -> int:
    v = value.strip().lower()
    if v in TRUE_WORDS:
        return 1
    if v in FALSE_WORDS:
        return 0
    raise DatasetFormatError(f"{where}: RELATION {value!r} is neither True nor False; expected {FORMAT}")


GENE_ID_FORMAT = re.compile(r"(?:NCBI\s*Gene[:_]?|NCBI[:_])?(\d+)", flags=re.IGNORECASE)
PHENOTYPE_ID_FORMAT = re.compile(r"HP[:_](\d+)", flags=re.IGNORECASE)


def normalise_ids(gene_id: str, phenotype_id: str, where: str) -> tuple[str, str]:
    """("NCBIGene:<n>", "HP:<7 digits>") from PGR's GENE_ID and PHENOTYPE_ID; a clear error for anything else."""
    gene = GENE_ID_FORMAT.fullmatch(gene_id.strip())
    phenotype = PHENOTYPE_ID_FORMAT.fullmatch(phenotype_id.strip())
    if gene is None or phenotype is None:
        swapped = PHENOTYPE_ID_FORMAT.fullmatch(gene_id.strip()) and GENE_ID_FORMAT.fullmatch(phenotype_id.strip())
        hint = ("the GENE_ID and PHENOTYPE_ID columns look swapped: put the gene id column first (or name the "
                "columns in a header row)" if swapped else
                "expected an NCBI Gene id such as 4830 and an HPO id such as HP_0002664")
        raise DatasetFormatError(f"{where}: unexpected ids GENE_ID={gene_id!r}, PHENOTYPE_ID={phenotype_id!r}; "
                                 f"{hint}; expected {FORMAT}")
    return f"NCBIGene:{int(gene.group(1))}", f"HP:{int(phenotype.group(1)):07d}"


def mark_entities(row: dict) -> str:
    """The sentence with `<< gene >>` and `[[ phenotype ]]` around the two mentions (found by their
    positions, else by their first occurrence; unmarked if absent or overlapping), HTML entities decoded."""
    sentence = row["SENTENCE"]
    spans = []
    for key, (left, right) in (("GENE", GENE_MARK), ("PHENOTYPE", PHENOTYPE_MARK)):
        mention = row[key]
        start = _int(row.get(f"{key}_START_POSITION"))
        end = _int(row.get(f"{key}_END_POSITION"))
        if start is None or end is None or sentence[start:end].lower() != mention.lower():
            start = sentence.lower().find(mention.lower())
            end = start + len(mention)
        if start >= 0 and mention:
            spans.append((start, end, left, right))
    spans.sort()
    if len(spans) == 2 and spans[0][1] > spans[1][0]:  # overlapping mentions: mark the gene only
        spans = [s for s in spans if s[2] == GENE_MARK[0]]
    for start, end, left, right in reversed(spans):
        sentence = f"{sentence[:start]}{left} {sentence[start:end]} {right}{sentence[end:]}"
    return html.unescape(sentence)


def _int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def read_pgr(root, *, hpo_path=None, confirmed_labels: bool = True, mark: bool = True, val_fraction: float = 0.1,
             seed: int = 0, max_nodes: int = 32) -> RealData:
    """PGR as `RealData`: texts = sentences, label 1 = the sentence states the relation, images = one
    torch_geometric subgraph per relation, unit = the relation. `info["relations"]` describes the units."""
    root = Path(root)
    if not root.is_dir():
        raise missing_root("PGR", root, HOW)
    files = find_files(root)
    texts, labels, split, example_id, keys, mentions = [], [], [], [], [], []
    dropped, row_id, reasons = 0, 0, {}
    for s, path in files.items():
        rows = read_tsv(path)
        reasons[s] = (f"{path.name} holds no row" if not rows else f"every row of {path.name} is uncertain "
                      f"(CONFIRMATION U), and confirmed_labels=True drops those: pass confirmed_labels=False")
        for row in rows:
            where = f"{path}, line {row['_line']}"
            missing = [c for c in REQUIRED if not row.get(c)]
            if missing:
                raise DatasetFormatError(f"{where}: empty {', '.join(missing)}; expected {FORMAT}")
            label = parse_label(row["RELATION"], where)
            row_id += 1
            confirmation = row.get("CONFIRMATION", "").strip().upper()[:1]
            if confirmed_labels and confirmation in ("I", "U"):
                if confirmation == "U":
                    dropped += 1
                    continue
                label = 1 - label
            keys.append(normalise_ids(row["GENE_ID"], row["PHENOTYPE_ID"], where))
            texts.append(mark_entities(row) if mark else html.unescape(row["SENTENCE"]))
            labels.append(label)
            split.append(s)
            example_id.append(row_id - 1)
            mentions.append((row["GENE"], row["PHENOTYPE"]))
    if not texts:
        raise DatasetFormatError(f"the PGR files under {root} hold no example; expected {FORMAT}")
    pairs = sorted(set(keys))
    unit_of = {k: i for i, k in enumerate(pairs)}
    unit = np.asarray([unit_of[k] for k in keys], dtype=np.int64)
    split = np.asarray(split)
    if "val" not in files:
        check_splits("PGR", np.append(split, "val"), reasons)
        train = split == "train"
        val_units = split_off(unit[train], val_fraction, seed)
        split[train & np.isin(unit, val_units)] = "val"
    check_splits("PGR", split, reasons)
    graphs, in_hpo, feature_size = relation_graphs(pairs, hpo_path, max_nodes, seed)
    first_mention = {}
    for k, m in zip(keys, mentions):
        first_mention.setdefault(k, m)
    relations = {
        "unit": np.arange(len(pairs)), "gene": [g for g, _ in pairs], "phenotype": [p for _, p in pairs],
        "gene_symbol": [first_mention[k][0] for k in pairs], "phenotype_name": [first_mention[k][1] for k in pairs],
        "in_hpo_extract": in_hpo,
    }
    return RealData("pgr", texts, np.asarray(labels, dtype=np.int64), unit.copy(), unit,
                    np.asarray(example_id, dtype=np.int64), split, graphs,
                    info={"relations": relations, "node_features": feature_size, "dropped_uncertain": dropped,
                          "source": str(root)})


def relation_graphs(pairs: list[tuple[str, str]], hpo_path=None, max_nodes: int = 32, seed: int = 0):
    """One subgraph per (gene, phenotype) pair; returns (graphs, in_extract (R,) bool, node feature size).

    Feature layout: that of `SubgraphSampler` (node id, kind, role, depth bucket) plus two slots
    for a gene or phenotype unknown to the extract."""
    import torch
    from torch_geometric.data import Data

    from ..hpo import DEPTH_BUCKETS, SubgraphSampler, load_extract, node_feature_size

    extract = load_extract(hpo_path)
    sampler = SubgraphSampler(extract, max_nodes=max_nodes, seed=seed)
    size = node_feature_size(extract)
    unknown = {0: size, 1: size + 1}  # gene, phenotype
    known = {n: i for i, n in enumerate(extract.ids)}
    graphs, in_extract = [], []
    for gene, phen in pairs:
        g, p = known.get(gene), known.get(phen)
        ok = g is not None and p is not None and extract.kind[g] == 0 and extract.kind[p] == 1
        in_extract.append(ok)
        if ok:
            data = sampler(g, p)
            ei = data.edge_index
            keep = ~(((ei[0] == 0) & (ei[1] == 1)) | ((ei[0] == 1) & (ei[1] == 0)))
            data.edge_index, data.edge_type = ei[:, keep], data.edge_type[keep]
            graphs.append(data)
            continue
        o = sampler.offsets
        rows, ids = [], []
        for kind, node in ((0, g), (1, p)):
            valid = node is not None and extract.kind[node] == kind
            depth = int(extract.depth[node]) if valid else 0
            rows.append([node if valid else unknown[kind], o["kind"] + kind, o["role"] + kind,
                         o["depth"] + min(depth, DEPTH_BUCKETS - 1)])
            ids.append(node if valid else -1)
        graphs.append(Data(x=torch.as_tensor(rows, dtype=torch.long), edge_index=torch.zeros(2, 0, dtype=torch.long),
                           edge_type=torch.zeros(0, dtype=torch.long), num_nodes=2,
                           node_ids=torch.as_tensor(ids, dtype=torch.long)))
    return graphs, np.asarray(in_extract), size + 2
