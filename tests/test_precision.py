"""The fast paths: bfloat16 with float32 master weights, length buckets, the [CLS]-only fusion layer.

Each must change speed only: outputs agree with the plain float32 / unbucketed / full computation
within stated tolerances, and a rerun with the same seed gives the same numbers.
"""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from mdlib.models.fusion import CrossAttentionFusion
from mdlib.precision import MasterWeights, model_dtype, resolve_precision
from mdlib.training import TrainConfig, train


@pytest.fixture(scope="module")
def small(fast_task):
    torch.manual_seed(0)
    return fast_task, fast_task.build_model().eval()


def test_resolve_precision():
    assert resolve_precision("fp32", "cpu") == torch.float32
    assert resolve_precision("bf16", "cpu") == torch.bfloat16
    assert resolve_precision("auto", "cpu") in (torch.float32, torch.bfloat16)
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision("fp16", "cpu")
    with pytest.raises(ValueError, match="precision must be one of"):
        TrainConfig(precision="half")


def test_bf16_outputs_agree_with_fp32(small):
    """Head log-odds in bfloat16 stay within 0.1 (absolute) of float32 on a small model (float32 pixels in)."""
    task, model = small
    batch = task.test.batch(torch.arange(48))
    low_model = copy.deepcopy(model).to(torch.bfloat16)
    with torch.no_grad():
        ref = task.logits(model, task.fused(model, task.encode(model, batch)))
        low = task.logits(low_model, task.fused(low_model, task.encode(low_model, batch)))
    assert low.dtype == torch.float32  # losses and metrics always read float32 logits
    ref_lo, low_lo = ref[:, 1] - ref[:, 0], low[:, 1] - low[:, 0]
    assert (ref_lo - low_lo).abs().max() < 0.1


def test_master_weights_keep_small_updates_and_frozen_weights():
    """Updates far below bfloat16's resolution accumulate in the float32 masters, frozen weights come back
    bit-identical, and the model is float32 again after restore."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Linear(8, 1))
    frozen_before = model[0].weight.detach().clone()
    trainable = list(model[1].parameters())
    for p in model[0].parameters():
        p.requires_grad_(False)
    start = model[1].weight.detach().clone()
    mp = MasterWeights(model, trainable, torch.bfloat16)
    opt = torch.optim.SGD(mp.masters(trainable), lr=1e-5)
    x = torch.randn(16, 8).bfloat16()
    for _ in range(20):
        opt.zero_grad()
        model(x).float().pow(2).mean().backward()
        mp.step(opt)
    mp.restore()
    assert model_dtype(model) == torch.float32
    assert torch.equal(model[0].weight, frozen_before)
    moved = (model[1].weight - start).abs().max().item()
    assert 0 < moved < 1e-2  # moved by the accumulated small steps, which bf16 weights alone would round away


def test_bucketed_batches_give_the_same_per_example_outputs(small):
    """Padding is masked everywhere: an example scores the same whether it is batched with long or short texts."""
    task, model = small
    examples = task.test.subset(torch.arange(96))
    g = torch.Generator().manual_seed(0)
    plain = torch.cat([task.logits(model, task.fused(model, task.encode(model, examples.batch(i))))
                       for i in torch.arange(96).split(32)]).detach()
    buckets = examples.length_buckets(torch.randperm(96, generator=g), 32, g)
    out = torch.empty_like(plain)
    for idx in buckets:
        batch = examples.batch(idx)
        out[idx] = task.logits(model, task.fused(model, task.encode(model, batch))).detach()
    torch.testing.assert_close(out, plain, atol=1e-4, rtol=1e-4)


def test_length_buckets_partition_and_cut_padding(fast_task):
    data = fast_task.train
    g = torch.Generator().manual_seed(1)
    idx = torch.randperm(len(data), generator=g)
    batches = data.length_buckets(idx, 32, g)
    assert sorted(torch.cat(batches).tolist()) == sorted(idx.tolist())
    assert max(len(b) for b in batches) <= 32

    def padding(bs):
        mask = data.fields["attention_mask"]
        return sum(int(mask[b].sum(1).max()) * len(b) - int(mask[b].sum()) for b in bs)

    assert padding(batches) < 0.5 * padding(list(idx.split(32)))


@pytest.mark.parametrize("with_image_mask", [False, True])
def test_cls_only_fusion_matches_the_full_layer(with_image_mask):
    torch.manual_seed(0)
    fusion = CrossAttentionFusion(64, 2, 4, 128).eval()
    for p in fusion.parameters():
        torch.nn.init.normal_(p, std=0.2)
    text, mask = torch.randn(5, 9, 64), torch.ones(5, 9)
    mask[1, 5:], mask[3, 2:] = 0, 0
    image, image_mask = torch.randn(5, 7, 64), torch.ones(5, 7)
    image_mask[2, 3:] = 0
    im = image_mask if with_image_mask else None
    full = fusion(text, mask, image, im)[:, 0]
    cls = fusion(text, mask, image, im, cls_only=True)[:, 0]
    torch.testing.assert_close(cls, full, atol=1e-5, rtol=1e-5)


def test_mlm_loss_reads_masked_positions_only(small):
    """The MLM loss equals the cross-entropy of the head applied to every position, at the masked ones."""
    task, model = small
    batch = task.train.batch(torch.arange(16))
    loss = task.mlm_loss(model, batch, torch.Generator().manual_seed(3))
    per_example = task.mlm_loss(model, batch, torch.Generator().manual_seed(3), reduction="none")
    # reference: the same masks, the head over all positions
    ids, mask = batch["input_ids"], batch["attention_mask"]
    tok = task.tokenizer
    special = (ids == tok.cls_token_id) | (ids == tok.sep_token_id) | (mask == 0)
    chosen = (torch.rand(ids.shape, generator=torch.Generator().manual_seed(3)) < 0.15) & ~special
    chosen[torch.arange(len(ids)), (~special).float().argmax(1)] |= ~chosen.any(1)
    logits = model.mlm_head(model.encode_text(ids.masked_fill(chosen, tok.mask_token_id), mask))
    ce = F.cross_entropy(logits.transpose(1, 2), ids.masked_fill(~chosen, -100), ignore_index=-100, reduction="none")
    torch.testing.assert_close(loss, ce.sum() / chosen.sum(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(per_example, ce.sum(1) / chosen.sum(1), atol=1e-5, rtol=1e-5)


_RERUN = """
import sys, torch
from mdlib.precision import model_dtype
from mdlib.tasks import load_task
from mdlib.training import TrainConfig, train
task = load_task("retrieval", fast=True)
data = task.train.with_units(task.train.units()[:64])
cfg = TrainConfig(epochs=2, batch_size=32, lr=1e-3, warmup_steps=1, eval_every=100, precision=sys.argv[1])
torch.manual_seed(0)
model = task.build_model()
history = train(model, task, data, cfg, seed=0, progress=False)
assert model_dtype(model) == torch.float32
print("LOSS", history[-1]["loss"], "SUM", repr(sum(float(v.double().sum()) for v in model.state_dict().values()
                                                   if v.is_floating_point())))
"""


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_rerun_gives_the_same_numbers(precision):
    """The same seed in a new process (a rerun of a notebook) gives the same numbers, and training in
    bfloat16 returns a float32 model. bfloat16 runs are bit-identical; float32 ones agree to about 1e-9
    of the weights' sum, because PyTorch's float32 attention kernel on the CPU adds its threads' parts
    in a varying order."""
    import subprocess
    import sys

    outs = [subprocess.run([sys.executable, "-c", _RERUN, precision], capture_output=True, text=True, check=True)
            .stdout.split("LOSS")[-1].split() for _ in range(2)]
    (loss_a, _, sum_a), (loss_b, _, sum_b) = outs
    assert float(loss_a) < 20  # a finite loss: it trained
    if precision == "bf16":
        assert (loss_a, sum_a) == (loss_b, sum_b)
    else:
        assert float(loss_a) == pytest.approx(float(loss_b), rel=1e-6)
        assert float(sum_a) == pytest.approx(float(sum_b), rel=1e-8)
