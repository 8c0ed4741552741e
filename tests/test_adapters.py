"""Real-data adapters on tiny fixtures written in each dataset's real format: split sizes, whole
deletion units, batch shapes, a training step of a tiny model, subsampling and the clear errors."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mdlib.data.adapters import DatasetFormatError, ImageBank, check_dataset, read_dataset, subsample
from mdlib.data.adapters.fixtures import write_fixture
from mdlib.data.adapters.nlvr2 import connected_components, image_names
from mdlib.data.adapters.pgr import read_tsv
from mdlib.tasks.real import load_real_task
from mdlib.tasks.retrieval import image_tensor

TINY = dict(hidden=32, image_layers=1, text_layers=1, fusion_layers=1, heads=2, intermediate=64, embed_dim=16,
            graph_layers=1)
SIZE = 16


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    """Fixture datasets, and a private mdlib cache (tokenizers) for this module."""
    base = tmp_path_factory.mktemp("real")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MDLIB_DATA", str(base / "cache"))
        out = {name: write_fixture(name, base / name) for name in ("flickr30k", "snli-ve", "nlvr2")}
        out["flickr30k-datasets"] = write_fixture("flickr30k-datasets", base / "flickr30k-datasets") / "hf"
        yield out


@pytest.fixture(scope="module")
def tasks(roots):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MDLIB_DATA", str(roots["flickr30k"].parent / "cache"))
        yield {name: load_real_task(name.replace("-datasets", ""), root, image_size=SIZE, model=TINY)
               for name, root in roots.items()}


def train_step(task, batch_size: int = 6) -> dict:
    """One AdamW step of a tiny model on a training batch; checks the loss is finite and weights move."""
    torch.manual_seed(0)
    model = task.build_model()
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    batch = task.train.batch(torch.arange(min(batch_size, len(task.train))))
    loss, logs = task.training_loss(model, batch, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(loss)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss.backward()
    opt.step()
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    model.eval()
    metrics = task.evaluate(model, "test")
    assert np.isfinite(metrics["d_test"])
    return logs


def assert_units_whole(task, size=2, seed=1):
    forget, retain = task.forget_split(size, seed)
    assert len(forget.units()) == size
    assert not set(forget.units()) & set(retain.units())
    assert len(forget) + len(retain) == len(task.train)
    assert len(task.train.with_units(forget.units())) == len(forget)  # every example of a deleted unit left


# -- Flickr30K -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["flickr30k", "flickr30k-datasets"])
def test_flickr30k_retrieval(tasks, name):
    task = tasks[name]
    assert type(task).__name__ == "RetrievalTask"
    assert (len(task.train), len(task.val), len(task.test)) == (24, 9, 9)  # restval counts as train
    assert len(task.train.units()) == 8 and task.unit_name == "image"
    for ex in (task.train, task.val, task.test):  # every caption of an image in one split, label 1
        assert (ex.fields["label"] == 1).all()
        assert not set(ex.units()) & (set(task.train.units()) if ex is not task.train else set())
    batch = task.train.batch(torch.arange(5))
    assert batch["image"].shape == (5, 3, SIZE, SIZE) and batch["image"].dtype == torch.float32
    assert -1.0 <= batch["image"].min() and batch["image"].max() <= 1.0
    assert batch["input_ids"].shape[0] == 5
    assert_units_whole(task)
    logs = train_step(task)
    assert {"itc", "itm"} <= set(logs)


def test_karpathy_and_datasets_sources_agree_on_structure(tasks):
    a, b = tasks["flickr30k"], tasks["flickr30k-datasets"]
    for s in ("train", "val", "test"):
        ea, eb = a.split(s), b.split(s)
        assert len(ea) == len(eb) and len(ea.units()) == len(eb.units())


def test_images_are_resized_rgb_in_unit_range(roots):
    from PIL import Image

    path = next((roots["flickr30k"] / "flickr30k-images").iterdir())
    expected = np.array(Image.open(path).convert("RGB").resize((SIZE, SIZE), Image.BICUBIC))
    bank = ImageBank([path], SIZE)
    assert torch.equal(bank[torch.tensor([0])], image_tensor(expected[None]))
    lazy = ImageBank([path, path], SIZE, preload=False)
    assert lazy.data is None and torch.equal(lazy[torch.tensor([[0, 1]])][0, 1], bank[0])


def test_preloaded_images_are_cached(roots, tmp_path):
    path = next((roots["flickr30k"] / "flickr30k-images").iterdir())
    first = ImageBank([path], SIZE, cache=tmp_path / "bank.pt")
    again = ImageBank([tmp_path / "not-read.jpg"], SIZE, cache=tmp_path / "bank.pt")  # served by the cache
    assert torch.equal(first[0], again[0])
    with pytest.raises(FileNotFoundError, match="not-read.jpg"):  # a cache of another shape is not used
        ImageBank([tmp_path / "not-read.jpg"], SIZE * 2, cache=tmp_path / "bank.pt")


def test_lazy_image_bank_gives_the_same_batches(roots, tasks):
    lazy = load_real_task("flickr30k", roots["flickr30k"], image_size=SIZE, preload_images=False)
    assert lazy.train.banks["image"].data is None
    idx = torch.arange(4)
    assert torch.equal(lazy.train.batch(idx)["image"], tasks["flickr30k"].train.batch(idx)["image"])


def test_datasets_hub_id_goes_through_load_dataset(roots, monkeypatch):
    import datasets

    calls = []
    def hub(source):
        calls.append(source)
        return datasets.load_from_disk(str(roots["flickr30k-datasets"]))
    monkeypatch.setattr(datasets, "load_dataset", hub)
    data = read_dataset("flickr30k", "someone/flickr30k")
    assert calls == ["someone/flickr30k"] and len(data) == 42

    def offline(source):
        raise ConnectionError("no network")
    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(FileNotFoundError, match="nlphuji/flickr30k"):
        read_dataset("flickr30k", "someone/flickr30k")


def test_max_examples_keeps_whole_units_deterministically(roots):
    data = read_dataset("flickr30k", roots["flickr30k"])
    small = subsample(data, 18, seed=3)
    assert len(small) <= 21 and set(small.counts()) == {"train", "val", "test"}
    for u in np.unique(small.unit):  # a unit is never cut: its 3 captions come together
        assert (small.unit == u).sum() == (data.unit == u).sum()
    assert np.array_equal(small.example_id, subsample(data, 18, seed=3).example_id)
    assert len(small.images) == len(np.unique(small.unit))  # only the kept images are loaded
    task = load_real_task("flickr30k", roots["flickr30k"], image_size=SIZE, max_examples=18, seed=3)
    assert len(task.train) + len(task.val) + len(task.test) == len(small)


# -- SNLI-VE --------------------------------------------------------------------------------------
def test_snli_ve_entailment(tasks):
    task = tasks["snli-ve"]
    assert type(task).__name__ == "EntailmentTask" and task.n_classes == 3
    assert (len(task.train), len(task.val), len(task.test)) == (18, 6, 6)  # the "-" row is skipped
    assert task.real["skipped"] == 1
    for ex in (task.train, task.val, task.test):  # balanced in the fixture: one hypothesis per label and image
        assert np.bincount(ex.fields["label"].numpy(), minlength=3).tolist() == [len(ex) // 3] * 3
    assert "desc_input_ids" in task.train.banks  # premises become the images' descriptions
    batch = task.train.batch(torch.arange(4))
    assert batch["image"].shape == (4, 3, SIZE, SIZE)
    assert_units_whole(task)
    logs = train_step(task)
    assert "itc" in logs and "ce" in logs
    assert task.examples_table("train", 1)[0]["template"] == "snli-ve"


# -- NLVR2 ----------------------------------------------------------------------------------------
def test_nlvr2_pairs_and_image_components(tasks):
    task = tasks["nlvr2"]
    assert type(task).__name__ == "NLVRTask" and task.n_images == 2
    assert (len(task.train), len(task.val), len(task.test)) == (8, 4, 4)
    # sets 0 and 1 share a photograph (right_url): their four statements are one unit
    assert len(task.train.units()) == 3
    counts = sorted(np.unique(task.train.fields["unit"].numpy(), return_counts=True)[1].tolist())
    assert counts == [2, 2, 4]
    batch = task.train.batch(torch.arange(4))
    assert batch["image"].shape == (4, 2, 3, SIZE, SIZE) and batch["image_index"].shape == (4, 2)
    assert_units_whole(task, size=1)
    assert task.itc_weight == 0.0  # no descriptions in NLVR2
    train_step(task)


def test_no_deleted_photograph_stays_in_retain(tasks):
    task = tasks["nlvr2"]
    for seed in range(4):
        forget, retain = task.forget_split(1, seed)
        photos = lambda ex: set(ex.fields["image_index"].flatten().tolist())  # noqa: E731
        assert not photos(forget) & photos(retain)


def test_nlvr2_helpers():
    assert image_names("dev-850-0-3") == ("dev-850-0-img0.png", "dev-850-0-img1.png")
    assert connected_components(np.array([[0, 1], [2, 1], [3, 4]]), 6).tolist() == [0, 0, 0, 3, 3, 5]


# -- PGR --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pgr_task(tmp_path_factory):
    pytest.importorskip("torch_geometric")
    root = write_fixture("pgr", tmp_path_factory.mktemp("pgr"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MDLIB_DATA", str(root / "cache"))
        yield load_real_task("pgr", root, model=TINY)


def test_pgr_graph_text(pgr_task):
    task = pgr_task
    assert type(task).__name__ == "GraphTextTask" and task.unit_name == "relation"
    # 10 train relations x 2 sentences, one relation split off as val; test: the U row is dropped
    assert (len(task.train), len(task.val), len(task.test)) == (18, 2, 7)
    assert task.real["dropped_uncertain"] == 1
    # curated labels: C keeps the silver label, I flips it
    assert task.test.fields["label"].tolist() == [1, 0, 0, 1, 1, 0, 0]
    text = task.texts[0]
    assert "<< CDH2 >>" in text and "[[ posteriorly rotated ears ]]" in text and "<here>" in text
    rel = task.relations
    assert rel["in_hpo_extract"].sum() == 6 and len(rel) == 14
    assert "CDH2" in task.describe(0)
    assert_units_whole(task)
    train_step(task)


def test_pgr_subgraphs(pgr_task):
    task = pgr_task
    graphs, rel = task.train.banks["image"], task.relations
    rows = {int(u): int(i) for u, i in zip(task.train.fields["unit"], task.train.fields["image_index"])}
    for unit, row in rows.items():
        g = graphs[row]
        assert int(g.x.max()) < task.model_defaults["node_features"]
        ei = g.edge_index
        assert not (((ei[0] == 0) & (ei[1] == 1)) | ((ei[0] == 1) & (ei[1] == 0))).any()  # the asked edge is hidden
        if rel.loc[unit, "in_hpo_extract"]:
            assert g.num_nodes > 2
        else:
            assert g.num_nodes == 2 and ei.shape[1] == 0


def test_pgr_tsv_with_or_without_header(tmp_path):
    root = write_fixture("pgr", tmp_path / "pgr")
    with_header = read_tsv(root / "train.tsv")
    lines = (root / "train.tsv").read_text().splitlines()[1:]
    (tmp_path / "bare.tsv").write_text("\n".join(lines) + "\n")
    bare = read_tsv(tmp_path / "bare.tsv")
    strip = lambda rows: [{k: v for k, v in r.items() if k != "_line"} for r in rows]  # noqa: E731
    assert strip(bare) == strip(with_header) and len(bare) == 20


# -- the rest of mdlib runs unchanged on real tasks ---------------------------------------------------
@pytest.mark.parametrize("name", ["flickr30k", "snli-ve", "nlvr2", "pgr"])
def test_multidelete_runs_on_every_real_task(request, name):
    from mdlib.methods import unlearn

    task = request.getfixturevalue("pgr_task") if name == "pgr" else request.getfixturevalue("tasks")[name]
    torch.manual_seed(0)
    model = task.build_model().eval()
    forget, retain = task.forget_split(2, seed=0)  # L_MD needs two units in a D_f batch
    result = unlearn("multidelete", model, task, forget, retain, task.val, seed=0, epochs=1, forget_batch=4,
                     retain_batch=4, progress=False)
    assert result.history and np.isfinite(result.history[-1]["d_f"])


# -- errors ----------------------------------------------------------------------------------------
def test_unknown_dataset_lists_valid_names():
    with pytest.raises(ValueError, match="flickr30k, snli-ve, nlvr2, pgr"):
        load_real_task("coco", "/nowhere")
    assert check_dataset("SNLI_VE") == "snli-ve"


@pytest.mark.parametrize("name,what", [("flickr30k", "dataset_flickr30k.json"), ("snli-ve", "necla-ml/SNLI-VE"),
                                       ("nlvr2", "nlvr2/data"), ("pgr", "lasigeBioTM/PGR")])
def test_missing_root_says_what_to_download(tmp_path, name, what):
    with pytest.raises(FileNotFoundError, match="not found") as err:
        load_real_task(name, tmp_path / "absent")
    assert what in str(err.value) and "pass" in str(err.value)


def test_folder_without_the_files_says_which(tmp_path):
    with pytest.raises(FileNotFoundError, match="lacks snli_ve_train.jsonl"):
        read_dataset("snli-ve", tmp_path)


def test_karpathy_json_missing_key(tmp_path, roots):
    blob = json.loads((roots["flickr30k"] / "dataset_flickr30k.json").read_text())
    del blob["images"][2]["sentences"]
    (tmp_path / "dataset_flickr30k.json").write_text(json.dumps(blob))
    with pytest.raises(DatasetFormatError, match=r"images\[2\] lacks the key\(s\) 'sentences'.*Karpathy"):
        read_dataset("flickr30k", tmp_path)
    (tmp_path / "dataset_flickr30k.json").write_text(json.dumps({"annotations": []}))
    with pytest.raises(DatasetFormatError, match="no list under the key 'images'"):
        read_dataset("flickr30k", tmp_path)


def test_snli_ve_missing_key(tmp_path, roots):
    root = write_fixture("snli-ve", tmp_path / "ve")
    path = root / "snli_ve_dev.jsonl"
    recs = [json.loads(x) for x in path.read_text().splitlines()]
    del recs[1]["gold_label"]
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    with pytest.raises(DatasetFormatError, match=r"snli_ve_dev.jsonl, line 2 lacks the key\(s\) 'gold_label'"):
        read_dataset("snli-ve", root)
    path.write_text("not json\n")
    with pytest.raises(DatasetFormatError, match="not valid JSON"):
        read_dataset("snli-ve", root)


def test_nlvr2_bad_label(tmp_path):
    root = write_fixture("nlvr2", tmp_path / "nlvr2")
    path = root / "dev.json"
    recs = [json.loads(x) for x in path.read_text().splitlines()]
    recs[0]["label"] = "maybe"
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    with pytest.raises(DatasetFormatError, match="dev.json, line 1: unexpected label 'maybe'"):
        read_dataset("nlvr2", root)


def test_pgr_wrong_columns(tmp_path):
    root = write_fixture("pgr", tmp_path / "pgr")
    lines = (root / "train.tsv").read_text().splitlines()
    (root / "train.tsv").write_text("\n".join([lines[0].replace("RELATION", "LABEL")] + lines[1:]) + "\n")
    with pytest.raises(DatasetFormatError, match="train.tsv: the header lacks the column.*RELATION"):
        read_dataset("pgr", root)
    (root / "train.tsv").write_text("\n".join(["a\tb\tc"] + lines[1:]) + "\n")
    with pytest.raises(DatasetFormatError, match="train.tsv, line 1: 3 tab-separated fields"):
        read_dataset("pgr", root)


def test_missing_images_are_reported(tmp_path):
    root = write_fixture("flickr30k", tmp_path / "f")
    (root / "flickr30k-images" / "1003.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"1 of 14 images are missing.*1003.jpg"):
        read_dataset("flickr30k", root)


def test_bad_options(roots):
    with pytest.raises(TypeError, match="unknown option.*image_dir"):
        load_real_task("flickr30k", roots["flickr30k"], hpo_path="x")
    with pytest.raises(ValueError, match="max_examples"):
        load_real_task("flickr30k", roots["flickr30k"], max_examples=0)
    with pytest.raises(ValueError, match="unknown model settings"):
        load_real_task("flickr30k", roots["flickr30k"], model={"hiden": 3})
