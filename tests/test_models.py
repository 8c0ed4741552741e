"""The model: shapes, the fusion sees the whole text, parameter groups, checkpoints."""
from __future__ import annotations

import pytest
import torch

from mdlib.models import ModelConfig, MultimodalModel
from mdlib.pipeline.checkpoints import CheckpointError, load_checkpoint, save_checkpoint
from mdlib.utils import resolve_device

TINY = ModelConfig(vocab_size=50, hidden=32, image_layers=1, text_layers=1, fusion_layers=1, heads=2,
                   intermediate=64, embed_dim=16)


def _inputs(b=3, length=9):
    torch.manual_seed(0)
    ids = torch.randint(5, 50, (b, length))
    ids[:, 0] = 2
    mask = torch.ones(b, length, dtype=torch.long)
    mask[0, 6:] = 0
    return torch.randn(b, 3, 32, 32), ids, mask


def test_shapes():
    model = MultimodalModel(TINY).eval()
    img, ids, mask = _inputs()
    states, image_mask = model.encode_image(img)
    assert states.shape == (3, 17, 32) and image_mask is None
    text = model.encode_text(ids, mask)
    assert text.shape == (3, 9, 32)
    fused = model.fuse(states, text, mask)
    assert fused.shape == (3, 32)
    assert model.head(fused).shape == (3, 2)
    v, t = model.contrastive_features(states, text)
    assert torch.allclose(v.norm(dim=-1), torch.ones(3)) and t.shape == (3, 16)


def test_fused_cls_sees_a_later_text_token():
    model = MultimodalModel(TINY).eval()
    img, ids, mask = _inputs()
    states, _ = model.encode_image(img)
    base = model.fuse(states, model.encode_text(ids, mask), mask)
    ids2 = ids.clone()
    ids2[1, 7] = 11 if ids[1, 7] != 11 else 12  # a token near the end of a full-length text
    changed = model.fuse(states, model.encode_text(ids2, mask), mask)
    assert (changed[1] - base[1]).abs().max() > 1e-4
    assert torch.allclose(changed[0], base[0]) and torch.allclose(changed[2], base[2])
    # padding is invisible: changing a padded token of text 0 changes nothing
    ids3 = ids.clone()
    ids3[0, 8] = 13
    assert torch.allclose(model.fuse(states, model.encode_text(ids3, mask), mask), base, atol=1e-6)


def test_fusion_self_attention_is_not_causal():
    model = MultimodalModel(TINY)
    assert all(not layer.attention.self.is_causal for layer in model.fusion.layers)


def test_parameter_groups_partition_the_model():
    model = MultimodalModel(TINY)
    enc = {id(p) for p in model.encoder_parameters()}
    fus = {id(p) for p in model.fusion_parameters()}
    assert not enc & fus
    assert enc | fus == {id(p) for p in model.parameters()}


def test_checkpoint_round_trip(tmp_path):
    model = MultimodalModel(TINY)
    path = save_checkpoint(tmp_path / "m.pt", model, {"note": "hi", "history": [{"epoch": 1, "loss": 0.5}]})
    loaded, meta = load_checkpoint(path)
    assert meta["note"] == "hi" and loaded.config == TINY
    for a, b in zip(model.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)
    assert not list(tmp_path.glob(".*tmp")), "no temporary file is left behind"


def test_corrupt_or_missing_checkpoint_says_what_to_do(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="delete it and run again"):
        load_checkpoint(bad)
    torch.save({"something": torch.zeros(2)}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not an mdlib checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")


def test_failed_save_leaves_the_old_checkpoint(tmp_path, monkeypatch):
    model = MultimodalModel(TINY)
    path = save_checkpoint(tmp_path / "m.pt", model)
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        save_checkpoint(path, model, {"x": 1})
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]


def test_two_callers_that_need_the_same_missing_checkpoint_train_it_once(fast_task, tmp_path, monkeypatch):
    """Two threads stand in for two processes (each opens the lock file itself, so they exclude each other
    as two processes do): one trains and saves, the other waits and loads the same weights."""
    import threading
    import time

    from mdlib.pipeline import original

    monkeypatch.setenv("MDLIB_DATA", str(tmp_path))
    trained = []

    def slow_train(model, *args, **kwargs):  # the real recipe would take a minute
        trained.append(threading.get_ident())
        time.sleep(0.5)
        return []

    monkeypatch.setattr(original, "train", slow_train)
    results = {}

    def call(name):
        results[name] = original.train_or_load(fast_task, fast_task.train, kind="original", seed=123,
                                               train_config=original.default_train_config(True, fast_task),
                                               progress=False)

    callers = [threading.Thread(target=call, args=(name,)) for name in ("a", "b")]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join()
    assert len(trained) == 1
    (model_a, meta_a), (model_b, meta_b) = results["a"], results["b"]
    assert sorted(meta["loaded_from"] is None for meta in (meta_a, meta_b)) == [False, True]
    b = model_b.state_dict()
    assert all(torch.equal(v, b[k]) for k, v in model_a.state_dict().items())


def test_a_file_system_without_locks_runs_the_block_unlocked(tmp_path, monkeypatch):
    import errno
    import fcntl

    from mdlib.utils import exclusive

    def refuse(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", refuse)
    ran = []
    with exclusive(tmp_path / "m.pt"):
        ran.append(True)
    assert ran == [True]


def test_model_config_validation():
    with pytest.raises(ValueError, match="hidden"):
        ModelConfig(hidden=30, heads=4)
    with pytest.raises(ValueError, match="positive int"):
        ModelConfig(image_layers=0)
    with pytest.raises(ValueError, match="modality"):
        ModelConfig(modality="audio")


def test_device_auto():
    assert resolve_device("auto").type in ("cpu", "cuda")
    assert resolve_device("cpu").type == "cpu"
    with pytest.raises(ValueError):
        resolve_device("tpu9")
