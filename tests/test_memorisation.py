"""Something to forget on every task: the photographer statements of the scene tasks, and the memorisation
report's figures (computed, not assumed: each is checked on data built to give a known answer)."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from mdlib.data.examples import ExampleSet
from mdlib.data.reasoning import CONTRADICTION, ENTAILMENT, world_photographers
from mdlib.memorisation import (df_text_overlap, memorisation_auc, memorisation_auc_by_template,
                                memorisation_auc_within_template, memorisation_report, pairing_gap,
                                pairing_probabilities, text_only_accuracy)


VOCAB: dict[str, int] = {}  # shared by every set built here, so that equal words get equal ids


def _examples(texts: list[str], labels: list[int], units: list[int] | None = None) -> ExampleSet:
    """Texts as token ids (one id per word, 0 = padding) with their labels."""
    rows = [[VOCAB.setdefault(w, len(VOCAB) + 1) for w in t.split()] for t in texts]
    width = max(map(len, rows))
    ids = torch.tensor([r + [0] * (width - len(r)) for r in rows])
    units = list(range(len(texts))) if units is None else units
    return ExampleSet({"input_ids": ids, "attention_mask": (ids > 0).long(), "label": torch.tensor(labels),
                       "unit": torch.tensor(units), "example_id": torch.arange(len(texts))})


# -- the photographer statements ----------------------------------------------------------------
def test_one_photographer_statement_per_unit_and_its_label_is_right(entailment, nlvr):
    names = world_photographers(entailment.world)
    for task in (entailment, nlvr):
        template = task.templates.index("photographer")
        for split in ("train", "val", "test"):
            ex = task.split(split)
            is_photo = ex.fields["template"] == template
            per_unit = np.bincount(ex.fields["unit"][is_photo].numpy(), minlength=int(ex.fields["unit"].max()) + 1)
            assert (per_unit[ex.units()] == 1).all()  # exactly one per image (entailment) or pair (NLVR)
            for i in torch.nonzero(is_photo)[:, 0].tolist():
                text, label = task.texts[int(ex.fields["example_id"][i])], int(ex.fields["label"][i])
                images = ex.fields["image_index"][i].reshape(-1).tolist()
                if task.name == "entailment":
                    assert (names[images[0]] in text) == (label == ENTAILMENT) and label in (ENTAILMENT, CONTRADICTION)
                else:
                    side = 0 if "left" in text else 1
                    assert (names[images[side]] in text) == (label == 1)
            # every other statement opens with its photographer(s): written for its own image
            for i in torch.nonzero(~is_photo)[:20, 0].tolist():
                text = task.texts[int(ex.fields["example_id"][i])]
                assert all(names[j] in text for j in ex.fields["image_index"][i].reshape(-1).tolist())
        # names the true photographer about half the time: the text alone cannot tell
        labels = task.train.fields["label"][task.train.fields["template"] == template]
        true = labels == (ENTAILMENT if task.name == "entailment" else 1)
        assert 0.35 < true.float().mean() < 0.65


def test_statement_tasks_have_texts_of_their_own_and_no_text_only_shortcut(entailment, nlvr):
    for task, bound in ((entailment, 55.0), (nlvr, 58.0)):
        forget, retain = task.forget_split(0.1, seed=0)
        assert df_text_overlap(forget, retain) <= 10.0  # was 98% (entailment) and 99.8% (NLVR) before names
        assert text_only_accuracy(task) <= bound  # the hypothesis alone decides at most half (entailment: 50%)


# -- the report's figures on data with a known answer -------------------------------------------
def test_df_text_overlap_counts_verbatim_repeats():
    retain = _examples(["a red circle", "a blue star", "by ada lund"], [1, 0, 1])
    forget = _examples(["a red circle", "a green ring", "by ada lund", "by bo berg"], [1, 1, 0, 0])
    assert df_text_overlap(forget, retain) == 50.0
    assert df_text_overlap(forget, _examples(["nothing alike here"], [0])) == 0.0
    with pytest.raises(ValueError, match="non-empty"):
        df_text_overlap(forget.subset(torch.tensor([], dtype=torch.long)), retain)


def test_text_only_accuracy_finds_a_text_shortcut_and_none_where_there_is_none():
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(30)]
    texts = [" ".join(rng.choice(words, 5)) for _ in range(600)]
    leaky = [int("w3" in t or "w7" in t) for t in texts]  # the label is in the words
    blind = rng.integers(2, size=600).tolist()  # the label is not
    for labels, low, high in ((leaky, 90, 100), (blind, 35, 65)):
        ex = _examples(texts, labels)
        task = SimpleNamespace(train=ex.subset(torch.arange(400)), test=ex.subset(torch.arange(400, 600)))
        assert low <= text_only_accuracy(task) <= high
    # retrieval-shaped data (every text is a true caption): the same words under both labels give exactly 50
    ex = _examples(texts, [1] * 600)
    task = SimpleNamespace(train=ex.subset(torch.arange(400)), test=ex.subset(torch.arange(400, 600)))
    assert text_only_accuracy(task) == 50.0


def _stand_in(examples: ExampleSet, reads: str):
    """A task whose "image" and "text" are example ids and whose head answers confidently with the label of the
    image's example (`reads="image"`), of the text's (`"text"`), or, for `"pair"`, with the label when image and
    text belong together and at chance when they do not."""
    truth = examples.fields["label"]

    class StandIn:
        @staticmethod
        def encode(model, batch):
            return SimpleNamespace(image=batch["example_id"], text=batch["example_id"])

        @staticmethod
        def fused(model, enc, text_perm=None):
            return torch.stack([enc.image, enc.text if text_perm is None else enc.text[text_perm]], 1)

        @staticmethod
        def logits(model, fused):
            image, text = fused[:, 0], fused[:, 1]
            if reads == "pair":  # sure of its own pairs, at chance on the others
                return 10.0 * torch.nn.functional.one_hot(truth[image], 2).float() * (image == text)[:, None]
            return 10.0 * torch.nn.functional.one_hot(truth[image] if reads == "image" else truth[text], 2).float()

        @staticmethod
        def labels(batch):
            return batch["label"]

    return StandIn


def test_pairing_gap_tells_a_memory_in_the_pairing_from_one_in_either_modality():
    examples = _examples([f"text {i}" for i in range(300)], [i % 2 for i in range(300)])
    model = torch.nn.Linear(1, 1)
    for reads in ("image", "text"):
        p = pairing_probabilities(_stand_in(examples, reads), model, examples)
        assert p["own"] > 0.99 and p[f"follows_{reads}"] > 0.99  # the unrelated pair keeps that modality's answer
        assert 0.3 < p[{"image": "follows_text", "text": "follows_image"}[reads]] < 0.7  # the other: chance
        assert pairing_gap(_stand_in(examples, reads), model, examples) == pytest.approx(0.0, abs=1e-3)
    p = pairing_probabilities(_stand_in(examples, "pair"), model, examples, batch_size=64)
    assert p["own"] > 0.99 and p["follows_image"] == p["follows_text"] == 0.5  # every partner from another example
    assert pairing_gap(_stand_in(examples, "pair"), model, examples) > 49.0  # two classes: at most 50
    with pytest.raises(ValueError, match="at least two"):
        pairing_probabilities(_stand_in(examples, "pair"), model, examples.subset(torch.tensor([0])))


def test_memorisation_auc_reads_the_log_odds_gap():
    class Scores:  # a stand-in task whose log-odds are the examples' labels: training examples score higher
        train = _examples(["x"] * 50, [3] * 50)
        test = _examples(["x"] * 50, [1] * 25 + [3] * 25)

        @staticmethod
        def true_logodds(model, examples):
            return examples.fields["label"].double().numpy()

    assert memorisation_auc(Scores, model=None) == 25.0  # half below every training example, half tied (1/2)


def _templated(scores: list[float], templates: list[int]) -> ExampleSet:
    examples = _examples(["x"] * len(scores), [0] * len(scores))
    examples.fields["score"] = torch.tensor(scores, dtype=torch.float64)
    examples.fields["template"] = torch.tensor(templates)
    return examples


class _TemplateScores:
    """A stand-in statement task whose log-odds are the examples' `score` field."""
    name, templates = "stand-in", ("count", "photographer")

    def __init__(self, train: ExampleSet, test: ExampleSet):
        self.train, self.test = train, test

    @staticmethod
    def true_logodds(model, examples):
        return examples.fields["score"].numpy()


def test_within_template_auc_compares_like_with_like():
    # count statements answered confidently (8) on training and test images alike; photographer statements
    # memorised: 4 on training images, 0 on test ones. Equal template shares in both splits.
    task = _TemplateScores(train=_templated([8] * 50 + [4] * 50, [0] * 50 + [1] * 50),
                           test=_templated([8] * 50 + [0] * 50, [0] * 50 + [1] * 50))
    assert memorisation_auc_by_template(task, None) == {"count": 50.0, "photographer": 0.0}
    assert memorisation_auc_within_template(task, None) == 25.0  # equal shares: the mean of 50 and 0
    # pooled: count pairs tie (1/4 x 1/2), a test count statement outranks a memorised training photographer
    # statement (1/4 x 1), a test photographer statement outranks nothing
    assert memorisation_auc(task, None) == 37.5
    # no memorisation at all, only the template mix differs between splits: the pooled AUC reads "memorised",
    # the within-template one does not
    task = _TemplateScores(train=_templated([8] * 80 + [0] * 20, [0] * 80 + [1] * 20),
                           test=_templated([8] * 20 + [0] * 80, [0] * 20 + [1] * 80))
    assert memorisation_auc(task, None) == pytest.approx(20.0)
    assert memorisation_auc_within_template(task, None) == 50.0
    # each template weighs by its share of the test examples: 80% count at 50, 20% photographer at 0 -> 40
    task.test = _templated([8] * 80 + [0] * 20, [0] * 80 + [1] * 20)
    task.train = _templated([8] * 30 + [5] * 70, [0] * 30 + [1] * 70)
    assert memorisation_auc_within_template(task, None) == 40.0


def test_within_template_auc_needs_templates(fast_task, entailment):
    with pytest.raises(ValueError, match="no statement templates"):
        memorisation_auc_within_template(fast_task, model=None)  # retrieval: captions have no templates
    torch.manual_seed(0)
    model = entailment.build_model().eval()
    by_template = memorisation_auc_by_template(entailment, model)
    assert "photographer" in by_template and set(by_template) <= set(entailment.templates)  # those in both splits
    assert all(0 <= v <= 100 for v in by_template.values())
    forget, retain = entailment.forget_split(0.1, seed=0)
    report = memorisation_report(entailment, model, forget, retain)  # scores each split once for both AUCs
    assert report["memorisation_auc_within"] == pytest.approx(memorisation_auc_within_template(entailment, model))
    assert report["memorisation_auc"] == pytest.approx(memorisation_auc(entailment, model))


def test_summarise_ranks_by_log_odds_and_reports_probabilities(entailment):
    from mdlib.metrics import d_f_score

    torch.manual_seed(0)
    model = entailment.build_model().eval()
    forget, retain = entailment.forget_split(0.1, seed=0)
    row = entailment.summarise(model, "untrained", forget, retain, seed=3)
    assert row["model"] == "untrained" and set(row) == {"model", "d_f", "p_forget", "p_retain", "p_test", "d_test"}
    expected = d_f_score(entailment.true_logodds(model, forget), entailment.true_logodds(model, retain), seed=3)
    assert row["d_f"] == pytest.approx(expected)
    p_forget = entailment.true_probability(model, forget)
    assert row["p_forget"] == pytest.approx(float(p_forget.mean()), abs=1e-5)
