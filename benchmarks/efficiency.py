"""Efficiency benchmark: prints, in one run, the ratios that issue 7 asks for.

    python benchmarks/efficiency.py            # full mode (minutes: it trains Retrain once, uncached)
    python benchmarks/efficiency.py --fast     # a quick smoke version
    python benchmarks/efficiency.py --device cuda

It reports
* the wall time of Retrain (a fresh training on D_r, never loaded from a checkpoint) and of
  MultiDelete / MultiDelete-F on the same forget set, and the ratio Retrain / MultiDelete,
  with each model's D_test so that "at equal D_test" can be read off;
* the time of one MultiDelete step with the frozen model's outputs cached vs recomputed.
Timings are medians of repeated measurements on the same machine; no assertion is made.
"""
from __future__ import annotations

import argparse
import time

import torch

from mdlib.methods import unlearn
from mdlib.methods.timing import step_time
from mdlib.metrics import d_f_score
from mdlib.models import MultimodalModel
from mdlib.pipeline.original import default_train_config, original_model
from mdlib.tasks import load_task
from mdlib.training import train
from mdlib.utils import resolve_device, seed_everything


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fast", action="store_true", help="the small fast-mode world and model")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--df-size", type=float, default=0.05, help="forget set: a fraction of the training images")
    ap.add_argument("--steps", type=int, default=20, help="timed steps per step-time measurement")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    device = resolve_device(args.device)
    task = load_task("retrieval", fast=args.fast)
    model, meta = original_model(task, args.seed, fast=args.fast, device=str(device), progress=False)
    forget, retain = task.forget_split(args.df_size, seed=args.seed)
    print(f"device {device}, torch threads {torch.get_num_threads()}, {'fast' if args.fast else 'full'} mode; "
          f"D_f {len(forget.units())} images ({len(forget)} pairs), D_r {len(retain)} pairs")

    print("\n-- step time: frozen model's outputs cached vs recomputed (median of", args.steps, "steps)")
    for name in ("multidelete", "multidelete-f"):
        cached = step_time(name, model, task, forget, retain, cache=True, steps=args.steps)
        fresh = step_time(name, model, task, forget, retain, cache=False, steps=args.steps)
        print(f"{name:14s} cached {cached * 1000:7.1f} ms   recomputed {fresh * 1000:7.1f} ms   "
              f"speed-up {fresh / cached:4.2f}x")

    print("\n-- whole runs on the same forget set")
    seed_everything(args.seed)
    retrained = MultimodalModel(model.config).to(device)
    start = time.perf_counter()
    train(retrained, task, retain, default_train_config(args.fast, task), seed=args.seed, progress=False)
    t_retrain = time.perf_counter() - start
    rows = [("retrain", t_retrain, retrained)]
    for name in ("multidelete", "multidelete-f"):
        result = unlearn(name, model, task, forget, retain, task.val, seed=args.seed, progress=False)
        rows.append((name, result.seconds, result.model))
    d_test_f = task.evaluate(model, "test")["d_test"]
    print(f"{'original':14s} {'':>9s}   D_test {d_test_f:5.1f}")
    for name, seconds, m in rows:
        d_f = d_f_score(task.true_logodds(m, forget), task.true_logodds(m, retain), seed=args.seed)
        print(f"{name:14s} {seconds:8.1f} s   D_test {task.evaluate(m, 'test')['d_test']:5.1f}   D_f score {d_f:5.1f}"
              + ("" if name == "retrain" else f"   Retrain / {name} = {t_retrain / seconds:5.1f}x"))


if __name__ == "__main__":
    main()
