"""Graph-text relation classification (PGR-shaped) on real gene-phenotype relations of the HPO.

An example is a sentence claiming that a gene relates to a phenotype ("mutations in SERPINB6
cause hearing impairment (lund et al. 2014).") together with the pair's neighbourhood in the HPO: a
subgraph of a few dozen genes and phenotype terms cut from the annotations that are not examples
themselves. Label 1 = the HPO annotates the gene with the phenotype; 0 = it does not, not even
through a more specific term. True and false claims share their templates, and each relation's
sentences cite their own (fictional) paper, as a PGR sentence comes from its own abstract.

Relations come in blocks of four: two HPO annotations (g1, p1), (g2, p2) and the two false claims
made by swapping their phenotypes, (g1, p2) and (g2, p1). In any set of whole blocks every gene and
every phenotype is as often true as false, so the label lies in the pair, not in its entities: a
model that knows only the label frequencies of the two entities is at chance on the test split, on
D_f and after a deletion alike (`entity_only_accuracy`). The block is the deletion unit: all sentences
of its four relations leave D_train together (the false claims are made of the true ones).
Data: mdlib/data/hpo.py and mdlib/data/hpo_extract/README.md.
"""
from __future__ import annotations

import numpy as np
import torch

from ..data.examples import ExampleSet
from ..data.hpo import (SPLITS, TEMPLATES, GraphTextData, graph_text_dataset, load_extract, node_feature_size,
                        relation_sentences)
from ..data.tokenizer import cached_tokenizer
from ..models import MultimodalModel
from ..utils import config_hash, data_dir
from .base import Encoded, Task


def gather_graphs(bank: list, index: torch.Tensor):
    """The subgraphs `bank[index]` as one torch_geometric Batch (the `image` entry of a batch)."""
    from torch_geometric.data import Batch

    return Batch.from_data_list([bank[i] for i in index.tolist()])


class GraphTextTask(Task):
    name = "graph-text"
    n_classes = 2
    unit_name = "block"
    variable_image_tokens = True
    class_names = ("not related", "related")

    @classmethod
    def build(cls, fast: bool = False, model_defaults: dict | None = None, *, seed: int = 0, path=None,
              sentences_per_relation: int = 3, max_nodes: int = 32, vocab_size: int = 2000) -> "GraphTextTask":
        """The task on the HPO extract (`path`, default mdlib/data/hpo_extract/): 400 relations in fast mode, all 4,000
        otherwise, split 80/10/10 by relation. The tokenizer is trained on the sentences of every relation
        of the extract (so fast and full mode share it) and cached under data_dir()/worlds/."""
        extract = load_extract(path)
        data = graph_text_dataset(extract, fast=fast, seed=seed, sentences_per_relation=sentences_per_relation,
                                  max_nodes=max_nodes)
        texts = [s for g, p, _ in extract.relations.tolist()
                 for s in relation_sentences(extract, g, p, sentences_per_relation, seed)]
        key = config_hash(extract.metadata["sha256"], TEMPLATES, "cited", seed, sentences_per_relation, vocab_size)
        tokenizer = cached_tokenizer(texts, data_dir() / "worlds" / f"hpo-{key}-graph-text-tokenizer", vocab_size)
        defaults = dict(model_defaults or {}, modality="graph", node_features=node_feature_size(extract),
                        graph_layers=2 if fast else 3, vocab_size=tokenizer.vocab_size)
        return cls.from_data(data, tokenizer, defaults)

    @classmethod
    def from_data(cls, data: GraphTextData, tokenizer, model_defaults: dict) -> "GraphTextTask":
        """Examples (one per sentence) from the dataset; unit = the relation's block, `relation` = its row in
        relations.tsv (stable ids)."""
        import pandas as pd

        max_len = model_defaults.get("max_text_len", 64)
        k = len(data.sentences[0])
        enc = tokenizer([s for ss in data.sentences for s in ss], padding="max_length", truncation=True,
                        max_length=max_len, return_tensors="pt")
        graph_index = torch.arange(len(data.rows)).repeat_interleave(k)
        rows = torch.as_tensor(data.rows, dtype=torch.long)
        fields = {
            "image_index": graph_index, "input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
            "label": torch.as_tensor(data.relations[:, 2], dtype=torch.long).repeat_interleave(k),
            "unit": torch.as_tensor(data.blocks, dtype=torch.long).repeat_interleave(k),
            "relation": rows.repeat_interleave(k), "example_id": (rows[:, None] * k + torch.arange(k)).reshape(-1),
        }
        everything = ExampleSet(fields, {"image": data.graphs}, gather_graphs, name="all")
        splits = [everything.with_units(np.unique(data.blocks[data.split == i]), s) for i, s in enumerate(SPLITS)]
        task = cls(*splits, tokenizer=tokenizer, model_defaults=model_defaults)
        task.data = data
        x = data.extract
        task.relations = pd.DataFrame({
            "relation": data.rows, "block": data.blocks, "gene": [x.ids[g] for g in data.relations[:, 0]],
            "gene_symbol": [x.names[g] for g in data.relations[:, 0]],
            "phenotype": [x.ids[p] for p in data.relations[:, 1]],
            "phenotype_name": [x.names[p] for p in data.relations[:, 1]],
            "label": data.relations[:, 2], "split": [SPLITS[s] for s in data.split],
        }).set_index("relation")
        return task

    def entity_only_accuracy(self, seed: int = 0) -> float:
        """Test accuracy (%) of a model that knows only which gene and which phenotype a claim names: logistic
        regression on one-hot gene and phenotype, fitted on the training examples. Blocks make every entity's
        training labels half true, half false, so it should sit at chance (50)."""
        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import OneHotEncoder

        def entities(examples: ExampleSet) -> np.ndarray:
            rows = examples.fields["relation"].numpy()
            return self.relations.loc[rows, ["gene", "phenotype"]].to_numpy()

        encoder = OneHotEncoder(handle_unknown="ignore").fit(entities(self.train))
        model = LogisticRegression(max_iter=2000, random_state=seed).fit(
            encoder.transform(entities(self.train)), self.train.fields["label"].numpy())
        prediction = model.predict(encoder.transform(entities(self.test)))
        return 100.0 * float((prediction == self.test.fields["label"].numpy()).mean())

    def train_overrides(self, fast: bool) -> dict:
        """Every sentence in every epoch (a unit is a block of four relations, so one sentence per unit and epoch
        would show each relation a quarter as often): 8 epochs in full mode, 7 in fast."""
        return {"one_per_unit": False} | ({"epochs": 7, "eval_every": 7} if fast else {"epochs": 8, "eval_every": 2})

    # -- readouts -------------------------------------------------------------------------
    def encode(self, model: MultimodalModel, batch) -> Encoded:
        """image: (B, 1, 1 + N_max, H) graph states with mask (B, 1, 1 + N_max); text: (B, L, H)."""
        states, mask = model.encode_image(batch["image"])
        text = model.encode_text(batch["input_ids"], batch["attention_mask"])
        return Encoded(states[:, None], mask[:, None], text, batch["attention_mask"])

    @staticmethod
    def unimodal(enc: Encoded) -> torch.Tensor:
        """[f_I(G); f_T(T)] flattened to (B, D), padded nodes and tokens zeroed (D follows the batch's widths)."""
        image = enc.image * enc.image_mask[..., None]
        text = enc.text * enc.text_mask[..., None]
        return torch.cat([image.flatten(1), text.flatten(1)], dim=1)

    @torch.no_grad()
    def evaluate(self, model: MultimodalModel, split: str | ExampleSet = "test", batch_size: int = 256) -> dict[str, float]:
        """Accuracy (d_test, in %), the AUC (x100) of P(related) (ranked by its log-odds) and its mean on true and
        on false claims."""
        from ..metrics import accuracy, auc

        examples = self.split(split) if isinstance(split, str) else split
        model.eval()
        device = next(model.parameters()).device
        logits, labels = [], []
        for batch in examples.batches(batch_size, device=device):
            logits.append(self.logits(model, self.fused(model, self.encode(model, batch))).float().cpu())
            labels.append(batch["label"].cpu())
        logits, labels = torch.cat(logits), torch.cat(labels)
        p = logits.softmax(-1)[:, 1].numpy()
        y = labels.numpy() == 1
        acc = accuracy(logits, labels)
        out = {"d_test": acc, "accuracy": acc}
        if y.any() and (~y).any():
            logodds = (logits[:, 1].double() - logits[:, 0].double()).numpy()  # P's order without its float32 ties at 1
            out |= {"auc": 100 * auc(logodds[y], logodds[~y]), "p_related_true": float(p[y].mean()),
                    "p_related_false": float(p[~y].mean())}
        return out

    def describe(self, unit: int) -> str:
        """The relations of a block (a deletion unit), one line each: gene, phenotype, label and split."""
        blocks = "block" in self.relations  # the embedded extract; real PGR data has one relation per unit
        rows = self.relations[self.relations.block == unit if blocks else self.relations.index == unit]
        if rows.empty:
            raise KeyError(f"{self.unit_name} {unit} is not part of this task")
        lines = [f"relation {i}: {r.gene_symbol} ({r.gene}) - {r.phenotype_name} ({r.phenotype}): "
                 f"{'known to the HPO' if r.label else 'not in the HPO'} [{r.split}]" for i, r in rows.iterrows()]
        return lines[0] if not blocks else f"block {unit}:\n  " + "\n  ".join(lines)


def relation_counts(task: GraphTextTask) -> dict[str, dict[str, int]]:
    """Relations per split and label, for a quick look at the balance (each block adds one of each per entity)."""
    t = task.relations
    return {s: {c: int(((t.split == s) & (t.label == i)).sum()) for i, c in enumerate(task.class_names)}
            for s in SPLITS}


__all__ = ["GraphTextTask", "gather_graphs", "relation_counts"]
