"""Speed of training, unlearning and evaluation: this tree against an earlier release, side by side.

    python benchmarks/speed.py                 # every task, full-mode model sizes (about 10 minutes)
    python benchmarks/speed.py --quick         # retrieval only, fewer steps (under 3 minutes)
    python benchmarks/speed.py --baseline REF  # compare with another git revision (default: before the speed work)

For each task it times, in separate worker processes that alternate (baseline, new, baseline,
new, ...) so that a drift of the machine's speed hits both alike:
* a training step of the original model (the library's own `train` on a slice of the training set,
  two epochs of warm-up, two timed), with each version's default recipe;
* an unlearning step of MultiDelete and MultiDelete-F (`mdlib.methods.timing.step_time`);
* one evaluation pass over the test split (`task.evaluate`).
The baseline runs the code of the git revision `--baseline` (extracted with `git archive`), so
"today's settings" are exactly what that release did. Then it counts the useful work of a new
training step (FLOPs without padding: counted by `torch.utils.flop_counter` at two text widths and
extrapolated to the batch's real text lengths) and measures this machine's matmul peak in the
precision the new step uses. The last line printed is one JSON object with `train_speedup`,
`unlearn_speedup` (baseline time / new time, retrieval) and `fraction_of_peak`.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BASELINE = "28c0452"  # the last release before the speed work


# -- worker: runs inside one version of mdlib -----------------------------------------------------------
def worker(task_name: str, steps: int, device: str) -> dict:
    import torch

    from mdlib.methods.timing import step_time
    from mdlib.pipeline.original import default_train_config
    from mdlib.tasks import load_task
    from mdlib.training import train
    from mdlib.utils import seed_everything

    task = load_task(task_name, fast=False)
    recipe = default_train_config(False, task)
    seed_everything(0)
    model = task.build_model().to(device)
    # a slice of the training set that gives `steps` steps per epoch; epoch 1 is the warm-up
    per_epoch = steps * recipe.batch_size
    units = task.train.units()[:per_epoch] if recipe.one_per_unit else None
    data = task.train.with_units(units) if units is not None else task.train.subset(torch.arange(per_epoch))
    cfg = type(recipe)(**{**recipe.to_dict(), "epochs": 4, "eval_every": 10**6, "warmup_steps": 1})
    history = train(model, task, data, cfg, seed=0, progress=False)
    # epochs 1-2 warm up (oneDNN builds a kernel per new matrix shape); epochs 3-4 are timed
    train_ms = 1000 * (history[3]["seconds"] - history[1]["seconds"]) / (2 * steps)
    forget, retain = task.forget_split(0.05, seed=0)
    out = {"train_ms": train_ms}
    for name in ("multidelete", "multidelete-f"):
        out[f"{name}_ms"] = 1000 * step_time(name, model, task, forget, retain, steps=steps, warmup=steps // 2)
    task.evaluate(model, "test")  # warm-up
    start = time.perf_counter()
    task.evaluate(model, "test")
    out["eval_ms"] = 1000 * (time.perf_counter() - start)
    return out


def useful_work(task_name: str, device: str, n_batches: int = 3) -> dict:
    """GFLOP of a new training step without padding, and the precision it runs in."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from mdlib.pipeline.original import default_train_config
    from mdlib.precision import resolve_precision
    from mdlib.tasks import load_task
    from mdlib.utils import seed_everything

    task = load_task(task_name, fast=False)
    recipe = default_train_config(False, task)
    seed_everything(0)
    model = task.build_model().to(device).train()
    g = torch.Generator().manual_seed(0)
    idx = task.train.one_per_unit(g) if recipe.one_per_unit else torch.randperm(len(task.train), generator=g)
    batches = (task.train.length_buckets(idx, recipe.batch_size, g) if recipe.bucket_by_length
               else list(idx.split(recipe.batch_size)))[:n_batches]
    options = dict(p_hard=recipe.p_hard, p_minimal=recipe.p_minimal, kind_weights=recipe.kind_weights,
                   mlm_weight=recipe.mlm_weight, itm_pos_weight=recipe.itm_pos_weight)

    def flops(batch, extra: int) -> float:
        if extra:
            batch = dict(batch, input_ids=torch.nn.functional.pad(batch["input_ids"], (0, extra)),
                         attention_mask=torch.nn.functional.pad(batch["attention_mask"], (0, extra)))
        counter = FlopCounterMode(display=False)
        with counter:
            loss, _ = task.training_loss(model, batch, generator=torch.Generator().manual_seed(1), **options)
            loss.backward()
        model.zero_grad(set_to_none=True)
        return counter.get_total_flops()

    useful, padded = [], []
    for idx in batches:
        batch = task.train.batch(idx, device)
        width = batch["input_ids"].shape[1]
        real = batch["attention_mask"].sum(1).float().mean().item()
        f1, f2 = flops(batch, 0), flops(batch, 8)
        per_token = (f2 - f1) / 8  # FLOPs per unit of text width, the whole batch
        padded.append(f1)
        useful.append(f1 - per_token * (width - real))
    dtype = resolve_precision(recipe.precision, torch.device(device))
    return {"useful_gflop": statistics.mean(useful) / 1e9, "counted_gflop": statistics.mean(padded) / 1e9,
            "precision": "bf16" if dtype == torch.bfloat16 else "fp32"}


def matmul_peak(dtype_name: str, device: str, size: int = 1024, reps: int = 30) -> float:
    """GFLOP/s of a size x size x size matmul in that precision (median of `reps`)."""
    import torch

    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[dtype_name]
    a, b = (torch.randn(size, size, dtype=dtype, device=device) for _ in range(2))
    times = []
    for i in range(reps + 3):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        a @ b
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        if i >= 3:
            times.append(time.perf_counter() - start)
    return 2 * size ** 3 / statistics.median(times) / 1e9


# -- driver -----------------------------------------------------------------------------------------
def extract(ref: str, into: Path) -> Path:
    """The files of git revision `ref` of this repository, extracted under `into`."""
    archive = into / "baseline.tar"
    with open(archive, "wb") as fh:
        subprocess.run(["git", "-C", str(REPO), "archive", ref], stdout=fh, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into / "tree", filter="data")
    return into / "tree"


def run_worker(tree: Path, task: str, steps: int, device: str) -> dict:
    env = dict(os.environ, PYTHONPATH=str(tree), MDLIB_BATCH="1")
    code = (f"import json, sys; sys.path.insert(0, {str(REPO / 'benchmarks')!r}); import speed; "
            f"print('RESULT', json.dumps(speed.worker({task!r}, {steps}, {device!r})))")
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=tree, capture_output=True, text=True)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if out.returncode or line is None:
        raise RuntimeError(f"the worker for {task} in {tree} failed:\n{out.stderr[-3000:]}")
    return json.loads(line[len("RESULT "):])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="retrieval only, fewer steps and rounds (< 3 minutes)")
    ap.add_argument("--tasks", nargs="+", default=None, help="tasks to time (default: all four; --quick: retrieval)")
    ap.add_argument("--baseline", default=BASELINE, help=f"git revision to compare with (default {BASELINE})")
    ap.add_argument("--rounds", type=int, default=None, help="baseline/new pairs per task (default 2; --quick 1)")
    ap.add_argument("--steps", type=int, default=None, help="timed training steps per round (default 16; --quick 10)")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    tasks = args.tasks or (["retrieval"] if args.quick else ["retrieval", "entailment", "nlvr", "graph-text"])
    rounds = args.rounds or (1 if args.quick else 2)
    steps = args.steps or (10 if args.quick else 16)
    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}; "
          f"baseline = git revision {args.baseline}, new = this tree", flush=True)
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        old_tree = extract(args.baseline, Path(tmp))
        for task in tasks:
            runs = {"baseline": [], "new": []}
            for _ in range(rounds):
                runs["baseline"].append(run_worker(old_tree, task, steps, args.device))
                runs["new"].append(run_worker(REPO, task, steps, args.device))
            results[task] = runs
            print(f"\n{task}: median of {rounds} round(s), ms")
            print(f"  {'':16s} {'baseline':>9s} {'new':>9s} {'speed-up':>9s}")
            for key in ("train_ms", "multidelete_ms", "multidelete-f_ms", "eval_ms"):
                old = statistics.median(r[key] for r in runs["baseline"])
                new = statistics.median(r[key] for r in runs["new"])
                ratios = [a[key] / b[key] for a, b in zip(runs["baseline"], runs["new"])]
                print(f"  {key[:-3]:16s} {old:9.1f} {new:9.1f} {statistics.median(ratios):8.2f}x", flush=True)
    work = useful_work("retrieval" if "retrieval" in tasks else tasks[0], args.device)
    peak = matmul_peak(work["precision"], args.device)
    main_task = "retrieval" if "retrieval" in results else tasks[0]
    runs = results[main_task]
    new_train = statistics.median(r["train_ms"] for r in runs["new"])
    achieved = work["useful_gflop"] / (new_train / 1000)

    def speedup(key: str) -> float:
        return statistics.median(a[key] / b[key] for a, b in zip(runs["baseline"], runs["new"]))

    print(f"\nuseful work of a new {main_task} training step: {work['useful_gflop']:.2f} GFLOP "
          f"({work['counted_gflop']:.2f} counted with padding), {achieved:.1f} GFLOP/s in {work['precision']}; "
          f"matmul peak in {work['precision']}: {peak:.1f} GFLOP/s")
    summary = {"task": main_task, "train_speedup": round(speedup("train_ms"), 3),
               "unlearn_speedup": round(speedup("multidelete_ms"), 3),
               "unlearn_f_speedup": round(speedup("multidelete-f_ms"), 3), "eval_speedup": round(speedup("eval_ms"), 3),
               "fraction_of_peak": round(achieved / peak, 3), "useful_gflops": round(achieved, 1),
               "peak_gflops": round(peak, 1), "precision": work["precision"], "baseline": args.baseline,
               "per_task": {t: {k: round(statistics.median(r[k] for r in v["new"]), 1) for k in v["new"][0]}
                            for t, v in results.items()}}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
