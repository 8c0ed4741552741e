"""The pretrained-backbone path, offline: tiny random ViT / BERT saved with `save_pretrained` (with a
BERT tokenizer, as a hub checkpoint folder holds it) stand in for downloaded weights."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from torch import nn

from mdlib.data.adapters.fixtures import WORDS, write_fixture
from mdlib.pipeline.checkpoints import CheckpointError, load_checkpoint, save_checkpoint
from mdlib.tasks.real import load_real_task

VIT = dict(image_size=32, patch_size=8, hidden_size=48, num_hidden_layers=1, num_attention_heads=2,
           intermediate_size=64)
BERT = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
            max_position_embeddings=64)


@pytest.fixture(scope="module")
def backbones(tmp_path_factory):
    """Folders like google/vit-* and bert-base-uncased: config.json + weights (+ vocab.txt for BERT)."""
    from transformers import BertConfig, BertModel, BertTokenizer, ViTConfig, ViTModel

    base = tmp_path_factory.mktemp("backbones")
    torch.manual_seed(0)
    ViTModel(ViTConfig(**VIT), add_pooling_layer=False).save_pretrained(base / "vit")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", *WORDS, *[f"img{i}" for i in range(14)]]
    BertModel(BertConfig(vocab_size=len(vocab), **BERT), add_pooling_layer=False).save_pretrained(base / "bert")
    (base / "bert" / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizer.from_pretrained(base / "bert").save_pretrained(base / "bert")
    return base


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return write_fixture("flickr30k", tmp_path_factory.mktemp("flickr"))


@pytest.fixture(scope="module")
def task(backbones, root):
    return load_real_task("flickr30k", root, image_backbone=backbones / "vit", text_backbone=backbones / "bert",
                          model=dict(fusion_layers=1, embed_dim=16))


def test_task_takes_sizes_and_tokenizer_from_the_backbones(task, backbones):
    d = task.model_defaults
    assert d["image_size"] == VIT["image_size"] and d["patch_size"] == VIT["patch_size"]
    assert d["hidden"] == BERT["hidden_size"] and d["heads"] == BERT["num_attention_heads"]
    assert d["image_backbone"] == str(backbones / "vit") and d["text_backbone"] == str(backbones / "bert")
    assert type(task.tokenizer).__name__.startswith("BertTokenizer")  # the backbone's own tokenizer
    assert task.tokenizer.convert_tokens_to_ids("dog") == 6
    assert task.train.batch(torch.arange(2))["image"].shape == (2, 3, 32, 32)


def test_model_loads_the_weights_and_bridges_widths(task, backbones):
    from transformers import BertModel, ViTModel

    model = task.build_model()
    vit = ViTModel.from_pretrained(backbones / "vit", add_pooling_layer=False)
    bert = BertModel.from_pretrained(backbones / "bert", add_pooling_layer=False)
    for ours, theirs in ((model.image_encoder.vit, vit), (model.text_encoder.bert, bert)):
        for (name, p), (_, q) in zip(ours.state_dict().items(), theirs.state_dict().items(), strict=True):
            assert torch.equal(p, q), name
    # vision 48 wide, text 32: the image states enter the fusion through a linear map
    assert isinstance(model.image_to_fusion, nn.Linear)
    assert (model.image_to_fusion.in_features, model.image_to_fusion.out_features) == (48, 32)
    assert model.mlm_head[-1].out_features == bert.config.vocab_size


def test_forward_backward_and_checkpoint_round_trip(task, tmp_path):
    torch.manual_seed(0)
    model = task.build_model().train()
    batch = task.train.batch(torch.arange(6))
    loss, logs = task.training_loss(model, batch, generator=torch.Generator().manual_seed(0), mlm_weight=0.2)
    assert torch.isfinite(loss) and {"itc", "itm", "mlm"} <= set(logs)
    loss.backward()
    for module in (model.image_encoder, model.text_encoder, model.image_to_fusion, model.fusion, model.head):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())
    torch.optim.AdamW(model.parameters(), lr=1e-3).step()
    path = save_checkpoint(tmp_path / "model.pt", model, {"note": "pretrained"})
    loaded, meta = load_checkpoint(path)
    assert meta == {"note": "pretrained"}
    saved, back = model.state_dict(), loaded.state_dict()
    assert saved.keys() == back.keys() and all(torch.equal(saved[k], back[k]) for k in saved)
    model.eval()
    with torch.no_grad():
        assert np.allclose(task.true_probability(model, task.val), task.true_probability(loaded, task.val))


def test_checkpoint_loads_without_the_backbone_folders(root, backbones, tmp_path):
    gone = tmp_path / "backbones"
    shutil.copytree(backbones, gone)
    moved = load_real_task("flickr30k", root, image_backbone=gone / "vit",
                           text_backbone=gone / "bert", model=dict(fusion_layers=1, embed_dim=16))
    path = save_checkpoint(tmp_path / "model.pt", moved.build_model())
    shutil.rmtree(gone)
    load_checkpoint(path)


def test_backbone_mismatches_are_clear(root, backbones):
    with pytest.raises(ValueError, match="image_size=64 differs from the image backbone's 32"):
        load_real_task("flickr30k", root, image_backbone=backbones / "vit", image_size=64)
    with pytest.raises(ValueError, match="is a 'bert' model"):
        load_real_task("flickr30k", root, image_backbone=backbones / "bert")
    with pytest.raises(FileNotFoundError, match="cannot read the text backbone"):
        load_real_task("flickr30k", root, text_backbone=backbones / "missing")


def test_graph_text_with_a_pretrained_text_encoder(backbones, tmp_path):
    pytest.importorskip("torch_geometric")
    root = write_fixture("pgr", tmp_path / "pgr")
    task = load_real_task("pgr", root, text_backbone=backbones / "bert", model=dict(fusion_layers=1, graph_layers=1))
    model = task.build_model().train()
    assert model.config.modality == "graph" and model.config.hidden == BERT["hidden_size"]
    loss, _ = task.training_loss(model, task.train.batch(torch.arange(4)))
    loss.backward()
    assert torch.isfinite(loss)
