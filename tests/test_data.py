"""The embedded world: determinism, uniqueness, splits by image, forget sets removed whole."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mdlib.data.forget import select_forget
from mdlib.data.scenes import NEGATIVE_KINDS, Scene, SceneObject, SceneSampler, captions, describe, perturb, render
from mdlib.data.world import WorldConfig, generate_world, load_world

SMALL = WorldConfig(n_train=120, n_val=20, n_test=20, seed=3)


def test_world_is_deterministic_and_cached(monkeypatch):
    import mdlib.data.world as world

    a, b = generate_world(SMALL), load_world(SMALL)
    assert world.world_path(SMALL).exists()
    monkeypatch.setattr(world, "generate_world", lambda *args, **kwargs: pytest.fail("generated again"))
    c = load_world(SMALL)  # from the datasets cache
    for w in (b, c):
        assert np.array_equal(a.images, w.images)
        assert a.captions == w.captions and a.negatives == w.negatives
        assert np.array_equal(a.split, w.split)
    other = generate_world(WorldConfig(n_train=120, n_val=20, n_test=20, seed=4))
    assert not np.array_equal(a.images, other.images)


def test_images_and_captions_are_unique():
    w = generate_world(SMALL)
    assert len({img.tobytes() for img in w.images}) == len(w)
    owner = {}
    for i, cs in enumerate(w.captions):
        assert len(cs) == SMALL.captions_per_image
        for c in cs:
            assert owner.setdefault(c, i) == i, f"caption shared by images {owner[c]} and {i}: {c}"


def test_every_caption_names_its_photographer_and_its_objects():
    rng = np.random.default_rng(0)
    scene = SceneSampler().sample(rng)
    for c in captions(scene, 5, rng):
        assert scene.tag in c.split()
        for o in scene.objects:
            assert f"{o.colour} {o.shape}" in c


def test_minimal_pairs_change_exactly_the_named_thing():
    scene = Scene((SceneObject("circle", "red", "small", "top left"), SceneObject("star", "blue", "large", "bottom right")), "anna", 1)
    rng = np.random.default_rng(0)
    assert perturb(scene, "tag", rng).tag != "anna"
    assert perturb(scene, "tag", rng).objects == scene.objects
    fields = ("shape", "colour", "size", "quadrant")
    changed_only = {"colour": {"colour"}, "shape": {"shape"}, "size": {"size"}, "place": {"quadrant"},
                    "binding": {"colour"}}
    for kind, allowed in changed_only.items():
        same_object = (lambda o: o.shape) if kind == "place" else (lambda o: o.quadrant)  # what stays put
        for _ in range(10):
            new = perturb(scene, kind, rng)
            assert new.tag == scene.tag and new.key() != scene.key(), kind
            old_objs, new_objs = sorted(scene.objects, key=same_object), sorted(new.objects, key=same_object)
            changed = {f for a, b in zip(old_objs, new_objs) for f in fields if getattr(a, f) != getattr(b, f)}
            assert changed == allowed, (kind, changed)
            n_changed = sum(a != b for a, b in zip(old_objs, new_objs))
            assert n_changed == (2 if kind == "binding" else 1), (kind, n_changed)
            if kind == "binding":  # the colours are swapped, not replaced
                assert sorted(o.colour for o in new.objects) == sorted(o.colour for o in scene.objects)
    with pytest.raises(ValueError, match="unknown negative kind"):
        perturb(scene, "texture", rng)


def test_render_is_deterministic_and_shaped():
    scene = SceneSampler().sample(np.random.default_rng(1))
    a, b = render(scene, 32), render(scene, 32)
    assert a.shape == (32, 32, 3) and a.dtype == np.uint8 and np.array_equal(a, b)


def test_splits_are_disjoint_and_by_image(fast_task):
    units = [set(s.units()) for s in (fast_task.train, fast_task.val, fast_task.test)]
    assert not (units[0] & units[1]) and not (units[0] & units[2]) and not (units[1] & units[2])
    # every caption of an image is in the same split as the image
    c = fast_task.world.config.captions_per_image
    for s in (fast_task.train, fast_task.val, fast_task.test):
        counts = np.bincount(s.fields["unit"].numpy())
        assert set(counts[counts > 0]) == {c}


@pytest.mark.parametrize("size", [10, 0.1])
def test_forget_split_removes_whole_units(fast_task, size):
    forget, retain = fast_task.forget_split(size, seed=0)
    f_units, r_units = set(forget.units()), set(retain.units())
    assert not f_units & r_units
    assert f_units | r_units == set(fast_task.train.units())
    assert len(forget) + len(retain) == len(fast_task.train)
    assert len(f_units) == (10 if size == 10 else round(0.1 * len(fast_task.train.units())))
    # every example of a deleted image is in D_f
    is_f = np.isin(fast_task.train.fields["unit"].numpy(), list(f_units))
    assert is_f.sum() == len(forget)
    again, _ = fast_task.forget_split(size, seed=0)
    assert np.array_equal(again.units(), forget.units())


@pytest.mark.parametrize("size,error", [(0, ValueError), (1000, ValueError), (1.5, ValueError), ("5", TypeError),
                                        (True, TypeError), (-0.2, ValueError)])
def test_bad_forget_sizes_are_refused_with_a_clear_message(size, error):
    with pytest.raises(error, match="forget"):
        select_forget(np.arange(100), size, seed=0)


def test_batch_trims_padding_and_gathers_images(fast_task):
    b = fast_task.train.batch(torch.arange(8))
    assert b["image"].shape == (8, 3, 32, 32)
    assert b["input_ids"].shape == b["attention_mask"].shape
    # padding shared by the whole batch is trimmed, to the longest text rounded up to a multiple of 4
    longest, width = int(b["attention_mask"].sum(1).max()), b["input_ids"].shape[1]
    assert width % 4 == 0 and longest <= width < longest + 4
    assert b["image"].min() >= -1 and b["image"].max() <= 1


def test_world_config_validation():
    with pytest.raises(ValueError, match="n_train"):
        WorldConfig(n_train=0)
    with pytest.raises(ValueError, match="multiple of 8"):
        WorldConfig(image_size=30)


def test_negative_kinds_cover_every_kind():
    w = generate_world(SMALL)
    assert set(w.negative_kinds.ravel()) == set(range(len(NEGATIVE_KINDS)))


def test_unknown_task_is_refused():
    from mdlib.tasks import load_task

    with pytest.raises(ValueError, match="unknown task 'captioning'"):
        load_task("captioning")
    with pytest.raises(TypeError, match="fast must be"):
        load_task("retrieval", fast="yes")


def test_describe_is_seeded():
    scene = SceneSampler().sample(np.random.default_rng(5))
    assert describe(scene, np.random.default_rng(1)) == describe(scene, np.random.default_rng(1))
    assert len({describe(scene, np.random.default_rng(s)) for s in range(10)}) > 1  # the seed is used


def test_sample_is_seeded_without_replacement_and_capped(fast_task):
    train = fast_task.train
    a, b, c = train.sample(50, seed=3), train.sample(50, seed=3), train.sample(50, seed=4)
    ids = a.fields["example_id"]
    assert len(a) == 50 and len(set(ids.tolist())) == 50
    assert torch.equal(ids, b.fields["example_id"]) and not torch.equal(ids, c.fields["example_id"])
    assert set(ids.tolist()) <= set(train.fields["example_id"].tolist())
    small = train.subset(torch.arange(5))
    assert sorted(small.sample(10, seed=0).fields["example_id"].tolist()) == sorted(small.fields["example_id"].tolist())
