"""Is there something to forget? The memorisation report of an original model (notebook 01).

Unlearning needs knowledge that is specific to the deleted examples. Three figures tell whether a task
and its original model have it; each is computed, none assumed:

* `memorisation_auc(task, model)`: AUC x 100 that a random *test* example gets a higher log-odds of its
  ground truth than a random *training* example. 50 = the model treats the two alike (nothing memorised);
  below 50 = training examples are favoured (memorised). The deletion set inherits that gap, and Retrain,
  which never saw it, does not.
* `memorisation_auc_within_template(task, model)`: the same AUC with each test example compared only with
  training examples of its own statement template (entailment, NLVR). The pooled AUC also ranks one kind of
  statement against another: if count statements are answered more confidently than photographer statements
  on training and test images alike, that difference, not membership, decides the pairs across templates.
  Comparing like with like removes it (membership inference calls this calibrating for difficulty);
  `memorisation_auc_by_template` gives each template's own AUC.
* `df_text_overlap(forget, retain)`: the share (%) of D_f's texts that occur verbatim in D_r. A text that
  D_r repeats is not specific to D_f: a model that saw D_r still knows it, Retrain included.
* `text_only_accuracy(task)`: the test accuracy (%) of a bag-of-words logistic regression on the text
  alone (word and word-pair counts). It bounds what a model can get without reading the image (or graph).
  For graph-text, `entity_only_accuracy` is the same for a model that knows only which gene and which
  phenotype a relation names (the label frequencies of the two entities).

A fourth figure says whether MultiDelete's premise holds for what was memorised:

* `pairing_gap(task, model, forget)`: how many points of f's mean P(ground truth) on D_f rest on the pairing
  itself: they vanish when each image (graph) is paired with another example's text, and neither the image's
  nor the text's own label survives. L_MD pulls a deleted pair towards f's output on such unrelated pairs, so
  near 0 means one modality alone carries the memory and decoupling cannot remove it (full-mode graph-text:
  f answers from the relation's subgraph, whatever the sentence).
"""
from __future__ import annotations

import numpy as np
import torch

from .data.examples import ExampleSet
from .metrics import auc
from .models import MultimodalModel
from .tasks.base import Task, derangement

__all__ = ["memorisation_auc", "memorisation_auc_by_template", "memorisation_auc_within_template", "df_text_overlap",
           "text_only_accuracy", "pairing_probabilities", "pairing_gap", "memorisation_report"]


def memorisation_auc(task: Task, model: MultimodalModel, train: ExampleSet | None = None,
                     test: ExampleSet | None = None) -> float:
    """AUC x 100 of the ground truth's log-odds, test examples (positives) against training examples."""
    train = task.train if train is None else train
    test = task.test if test is None else test
    return 100 * auc(task.true_logodds(model, test), task.true_logodds(model, train))


def _has_templates(task: Task, *splits: ExampleSet) -> bool:
    """Whether the task's statements come in two or more templates (entailment, NLVR) that `splits` label."""
    return len(getattr(task, "templates", ())) > 1 and all("template" in ex.fields for ex in splits)


def _template_aucs(task: Task, z_test: np.ndarray, z_train: np.ndarray, test: ExampleSet,
                   train: ExampleSet) -> dict[str, tuple[float, int]]:
    """{template: (AUC x 100 of its test log-odds against its training ones, its number of test examples)}
    from the log-odds of every test (N_test,) and training (N_train,) example; templates in both splits."""
    t_test, t_train = test.fields["template"].numpy(), train.fields["template"].numpy()
    return {task.templates[k]: (100 * auc(z_test[t_test == k], z_train[t_train == k]), int((t_test == k).sum()))
            for k in np.intersect1d(t_test, t_train)}


def _within(template_aucs: dict[str, tuple[float, int]]) -> float:
    """The per-template AUCs weighted by their number of test examples."""
    aucs, n_test = np.array(list(template_aucs.values()), dtype=np.float64).T
    return float((n_test * aucs).sum() / n_test.sum())


def _template_aucs_of(task: Task, model: MultimodalModel, train: ExampleSet | None,
                      test: ExampleSet | None) -> dict[str, tuple[float, int]]:
    """`_template_aucs` of `model` on the given splits (None = the task's own)."""
    train = task.train if train is None else train
    test = task.test if test is None else test
    if not _has_templates(task, test, train):
        raise ValueError(f"the {task.name} task has no statement templates to compare within; "
                         "memorisation_auc compares all its examples at once")
    return _template_aucs(task, task.true_logodds(model, test), task.true_logodds(model, train), test, train)


def memorisation_auc_by_template(task: Task, model: MultimodalModel, train: ExampleSet | None = None,
                                 test: ExampleSet | None = None) -> dict[str, float]:
    """{template: `memorisation_auc` of that template's examples alone} (entailment, NLVR)."""
    return {name: value for name, (value, _) in _template_aucs_of(task, model, train, test).items()}


def memorisation_auc_within_template(task: Task, model: MultimodalModel, train: ExampleSet | None = None,
                                     test: ExampleSet | None = None) -> float:
    """`memorisation_auc` with each test example compared only with training examples of its own template:
    P(a random test example outranks a random training example of the same template) x 100, i.e. the
    per-template AUCs weighted by their share of the test examples. 50 = no template tells training from
    test examples, however confident the model is on one template relative to another."""
    return _within(_template_aucs_of(task, model, train, test))


def _texts(examples: ExampleSet) -> list[tuple[int, ...]]:
    """Each example's text as the tuple of its token ids (padding dropped): equal tuples = the same words."""
    ids, mask = examples.fields["input_ids"], examples.fields["attention_mask"].bool()
    return [tuple(row[m].tolist()) for row, m in zip(ids, mask)]


def df_text_overlap(forget: ExampleSet, retain: ExampleSet) -> float:
    """Share (%) of the forget set's examples whose text occurs verbatim among the retained examples."""
    if len(forget) == 0:
        raise ValueError("df_text_overlap needs a non-empty forget set")
    kept = set(_texts(retain))
    return 100.0 * float(np.mean([t in kept for t in _texts(forget)]))


def _documents(examples: ExampleSet) -> list[str]:
    return [" ".join(map(str, t)) for t in _texts(examples)]


def _fit_bag_of_words(train_docs: list[str], train_labels: np.ndarray, test_docs: list[str],
                      test_labels: np.ndarray, seed: int = 0) -> float:
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression

    vectorizer = CountVectorizer(ngram_range=(1, 2), token_pattern=r"\S+", binary=True)
    x_train = vectorizer.fit_transform(train_docs)
    classifier = LogisticRegression(C=1.0, max_iter=2000, random_state=seed).fit(x_train, train_labels)
    return 100.0 * float((classifier.predict(vectorizer.transform(test_docs)) == test_labels).mean())


def text_only_accuracy(task: Task, seed: int = 0) -> float:
    """Test accuracy (%) of a text-only model: logistic regression on word and word-pair counts of the text.

    Retrieval has no text label (every caption belongs to its image): there the text-only model tells a
    caption paired with its own image from the same caption paired with another image. It sees the same
    words under both labels, so it scores 50 by construction, which this function computes rather than assumes.
    """
    train_docs, test_docs = _documents(task.train), _documents(task.test)
    y_train, y_test = task.train.fields["label"].numpy(), task.test.fields["label"].numpy()
    if len(np.unique(y_train)) == 1:  # retrieval: each caption once with its own image (1), once with another (0)
        train_docs, test_docs = train_docs * 2, test_docs * 2
        y_train = np.r_[np.ones(len(y_train)), np.zeros(len(y_train))]
        y_test = np.r_[np.ones(len(y_test)), np.zeros(len(y_test))]
    return _fit_bag_of_words(train_docs, y_train, test_docs, y_test, seed)


@torch.no_grad()
def pairing_probabilities(task: Task, model: MultimodalModel, examples: ExampleSet, seed: int = 0,
                          batch_size: int = 256) -> dict[str, float]:
    """Mean P(ground truth) of each example with its own image (graph), `own`, and on unrelated pairs: image i
    with the text of another example p(i) of the batch, from another deletion unit (`derangement`, seeded).
    On an unrelated pair, `follows_image` is the probability of image i's own label and `follows_text` that of
    text p(i)'s label: what the model answers from one modality alone. (Retrieval: every label is "matched",
    so the two coincide.)"""
    model.eval()
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    own, follows_image, follows_text = [], [], []
    for batch in examples.batches(batch_size, device=device):
        if len(batch["unit"]) < 2:  # a single example has no partner
            continue
        enc, labels = task.encode(model, batch), task.labels(batch)
        perm = derangement(batch["unit"].cpu(), generator, strict=False).to(labels.device)
        p_own = task.logits(model, task.fused(model, enc)).softmax(-1)
        p_other = task.logits(model, task.fused(model, enc, perm)).softmax(-1)  # pair i: image i, text perm[i]
        own.append(p_own.gather(1, labels[:, None])[:, 0].cpu())
        follows_image.append(p_other.gather(1, labels[:, None])[:, 0].cpu())
        follows_text.append(p_other.gather(1, labels[perm][:, None])[:, 0].cpu())
    if not own:
        raise ValueError("pairing_probabilities needs at least two examples")
    return {k: float(torch.cat(v).mean()) for k, v in
            (("own", own), ("follows_image", follows_image), ("follows_text", follows_text))}


def pairing_gap(task: Task, model: MultimodalModel, examples: ExampleSet, seed: int = 0) -> float:
    """Points of mean P(ground truth) that rest on the pairing itself: 100 x (`own` - the larger of
    `follows_image` and `follows_text`, `pairing_probabilities`). Near 0: one modality alone gives f's answer,
    so an unrelated pair, L_MD's target, still carries it. Larger: the answer needs the pair; with k balanced
    classes at most 100 (1 - 1/k) if f is at chance on unrelated pairs, and up to 100 on retrieval, whose
    unrelated pairs f calls unmatched."""
    p = pairing_probabilities(task, model, examples, seed)
    return 100.0 * (p["own"] - max(p["follows_image"], p["follows_text"]))


def memorisation_report(task: Task, model: MultimodalModel, forget: ExampleSet, retain: ExampleSet,
                        seed: int = 0) -> dict[str, float]:
    """`memorisation_auc`, `df_text_overlap`, `df_pairing_gap` (`pairing_gap` on D_f), `text_only_acc`
    (+ `memorisation_auc_within` for the statement tasks, `entity_only_acc` for graph-text)."""
    z_test, z_train = task.true_logodds(model, task.test), task.true_logodds(model, task.train)  # scored once
    report = {"memorisation_auc": 100 * auc(z_test, z_train)}
    if _has_templates(task, task.test, task.train):  # entailment, NLVR
        report["memorisation_auc_within"] = _within(_template_aucs(task, z_test, z_train, task.test, task.train))
    report |= {"df_text_overlap": df_text_overlap(forget, retain), "df_pairing_gap": pairing_gap(task, model, forget, seed),
               "text_only_acc": text_only_accuracy(task, seed)}
    if hasattr(task, "entity_only_accuracy") and "relation" in task.train.fields:  # the embedded graph-text task
        report["entity_only_acc"] = task.entity_only_accuracy(seed)
    return report
