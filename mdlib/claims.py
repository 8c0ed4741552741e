"""The paper's claims, each decided once from a results table: notebooks 06, 08 and 11 all call `decide`.

    verdicts = claims.decide(results)           # results: the long table of `pipeline.results.collect`
    verdicts[["task", "claim", "verdict", "evidence"]]

A claim compares means over seeds. Its verdict is "holds" or "does not hold" when the comparison is
clear, "within noise" when the 95% intervals (t distribution over seeds) of the two sides overlap
(one seed: no interval, so the verdict stands on the means alone and says so), and "not measured"
when the run holds no numbers for it. Because every notebook calls the same function on the same
recorded numbers, a claim gets one verdict per run.

Where each claim's numbers come from: Table 1 and Table 3 from notebook 06 (the tuning/evaluation
protocol of `pipeline.protocol`), the ablation from notebook 08, the time from notebook 09.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .metrics import mean_interval

__all__ = ["CLAIMS", "decide"]

SCRUBBING = ("dtd", "dtd-f", "l-codec", "l-codec-f")
REFERENCES = ("original", "retrain")


def _fmt(values) -> str:
    m, h = mean_interval(values)
    return f"{m:.1f}" if math.isnan(h) else f"{m:.1f} ± {h:.1f}"


@dataclass
class _Table:
    """Per-seed values of one notebook's metrics for one task: values(method, metric) -> array over seeds."""

    rows: pd.DataFrame

    def values(self, method: str, metric: str) -> np.ndarray:
        r = self.rows[(self.rows["method"] == method) & (self.rows["metric"] == metric)]
        return r.sort_values("seed")["value"].to_numpy(float)

    def methods(self, metric: str) -> list[str]:
        return sorted(self.rows.loc[self.rows["metric"] == metric, "method"].unique())

    def mean(self, method: str, metric: str) -> float:
        return mean_interval(self.values(method, metric))[0]


def _order(lower: np.ndarray, higher: np.ndarray) -> str:
    """Does `lower` sit below `higher`? Clear, within noise (intervals overlap) or the other way."""
    (ml, hl), (mh, hh) = mean_interval(lower), mean_interval(higher)
    if math.isnan(ml) or math.isnan(mh):
        return "not measured"
    if not (math.isnan(hl) or math.isnan(hh)) and ml + hl >= mh - hh and ml < mh:
        return "within noise"
    return "holds" if ml < mh else "does not hold"


def _baselines(t: _Table, metric: str) -> list[str]:
    return [m for m in t.methods(metric) if not m.startswith("multidelete") and m not in REFERENCES]


def _seeds(t: _Table) -> str:
    n = t.rows["seed"].nunique()
    return f"{n} seed{'s' if n != 1 else ''}" + (" (no interval)" if n == 1 else "")


def _table1_d_f(t: _Table):
    """Table 1: MultiDelete's D_f score is below every baseline's."""
    others = _baselines(t, "d_f")
    if "multidelete" not in t.methods("d_f") or not others:
        return "not measured", "needs MultiDelete and at least one baseline"
    best = min(others, key=lambda m: t.mean(m, "d_f"))
    verdict = _order(t.values("multidelete", "d_f"), t.values(best, "d_f"))
    return verdict, (f"MultiDelete {_fmt(t.values('multidelete', 'd_f'))} vs lowest baseline {best} "
                     f"{_fmt(t.values(best, 'd_f'))}")


def _table1_d_test(t: _Table):
    """Table 1: MultiDelete keeps D_test within 1 point of Retrain's."""
    md, re = t.values("multidelete", "d_test"), t.values("retrain", "d_test")
    if not md.size or not re.size:
        return "not measured", "needs MultiDelete and Retrain"
    gap = mean_interval(md)[0] - mean_interval(re)[0]
    return ("holds" if abs(gap) <= 1 else "does not hold"), f"MultiDelete {_fmt(md)} vs Retrain {_fmt(re)}"


def _table1_distance(t: _Table):
    """MultiDelete's distance to Retrain (|D_f score - Retrain's|) is below every tuned baseline's."""
    others = _baselines(t, "abs_dist_retrain")
    if "multidelete" not in t.methods("abs_dist_retrain") or not others:
        return "not measured", "needs MultiDelete and at least one baseline scored against Retrain"
    best = min(others, key=lambda m: t.mean(m, "abs_dist_retrain"))
    floor = t.values("retrain", "retrain_noise_floor")
    verdict = _order(t.values("multidelete", "abs_dist_retrain"), t.values(best, "abs_dist_retrain"))
    return verdict, (f"MultiDelete {_fmt(t.values('multidelete', 'abs_dist_retrain'))} vs closest baseline {best} "
                     f"{_fmt(t.values(best, 'abs_dist_retrain'))}"
                     + (f"; Retrain vs Retrain {_fmt(floor)}" if floor.size else ""))


def _table1_scrubbing(t: _Table):
    """Scrubbing methods (DtD, L-CODEC) lose the most D_test."""
    scrub = [m for m in SCRUBBING if m in t.methods("d_test")]
    rest = [m for m in _baselines(t, "d_test") if m not in SCRUBBING]
    if not scrub or not rest:
        return "not measured", "needs a scrubbing method and another baseline"
    worst_scrub = max(scrub, key=lambda m: t.mean(m, "d_test"))  # the scrubber that keeps the most
    worst_rest = min(rest, key=lambda m: t.mean(m, "d_test"))
    verdict = _order(t.values(worst_scrub, "d_test"), t.values(worst_rest, "d_test"))
    return verdict, (f"best-kept scrubber {worst_scrub} {_fmt(t.values(worst_scrub, 'd_test'))} vs least-kept other "
                     f"{worst_rest} {_fmt(t.values(worst_rest, 'd_test'))}")


def _table3_mi(t: _Table):
    """Table 3: MultiDelete's MI ratio is above every baseline's that did not collapse (D_test kept).

    The MI ratio is mean P(member | D_f) under f over the same under f': above 1, D_f looks less like training
    data than before. The paper reads higher as better; a model that never saw D_f (Retrain) sets the level
    worth reaching, and a collapsed model reaches any ratio, so collapsed baselines are left out."""
    if "multidelete" not in t.methods("mi_ratio"):
        return "not measured", "needs MI ratios (notebook 06's protocol)"
    kept = [m for m in _baselines(t, "mi_ratio") if not (t.values(m, "collapsed") > 0).any()]
    collapsed = [m for m in _baselines(t, "mi_ratio") if m not in kept]
    if not kept:
        return "not measured", "every baseline collapsed: no MI ratio to compare with"
    best = max(kept, key=lambda m: t.mean(m, "mi_ratio"))
    verdict = _order(t.values(best, "mi_ratio"), t.values("multidelete", "mi_ratio"))
    retrain = t.values("retrain", "mi_ratio")
    return verdict, (f"MultiDelete {_fmt(t.values('multidelete', 'mi_ratio'))} vs highest kept baseline {best} "
                     f"{_fmt(t.values(best, 'mi_ratio'))}"
                     + (f"; Retrain {_fmt(retrain)} (the level of a model that never saw D_f)" if retrain.size else "")
                     + (f"; collapsed, not ranked: {', '.join(collapsed)}" if collapsed else ""))


def _ablation_md(t: _Table):
    """Ablation: without L_MD the D_f score stays at about 50 (within 5)."""
    v = t.values("multidelete-no-md", "d_f")
    if not v.size:
        return "not measured", "needs notebook 08"
    return ("holds" if abs(mean_interval(v)[0] - 50) <= 5 else "does not hold"), f"MultiDelete without MD {_fmt(v)}"


def _ablation_mkr(t: _Table):
    """Ablation: removing multimodal knowledge retention costs the most D_test."""
    variants = [m for m in ("multidelete", "multidelete-no-md", "multidelete-no-ukr", "multidelete-no-mkr")
                if m in t.methods("d_test")]
    if "multidelete-no-mkr" not in variants or len(variants) < 2:
        return "not measured", "needs notebook 08"
    lowest = min(variants, key=lambda m: t.mean(m, "d_test"))
    others = [m for m in variants if m != "multidelete-no-mkr"]
    runner_up = min(others, key=lambda m: t.mean(m, "d_test"))
    verdict = _order(t.values("multidelete-no-mkr", "d_test"), t.values(runner_up, "d_test"))
    return verdict, ", ".join(f"{m} {_fmt(t.values(m, 'd_test'))}" for m in variants) + f" (lowest: {lowest})"


def _ablation_ukr(t: _Table):
    """Ablation: removing unimodal knowledge retention lowers the unimodal probe's accuracy."""
    a, b = t.values("multidelete-no-ukr", "probe_acc"), t.values("multidelete", "probe_acc")
    if not a.size or not b.size:
        return "not measured", "needs notebook 08's probe"
    return _order(a, b), f"without UKR {_fmt(a)} vs MultiDelete {_fmt(b)}"


def _efficiency(t: _Table):
    """MultiDelete's time grows linearly with |D_f| and stays far below Retrain's (under a fifth)."""
    r = t.rows[(t.rows["method"] == "multidelete") & (t.rows["metric"] == "seconds")]
    by_size = r.groupby("df_size")["value"].mean()
    if len(by_size) < 3:
        return "not measured", "needs notebook 09 with three forget sizes or more"
    corr = float(np.corrcoef(by_size.index.to_numpy(float), by_size.to_numpy())[0, 1])
    retrain = t.mean("retrain", "seconds")
    ok = corr > 0.95 and (math.isnan(retrain) or by_size.max() < retrain / 5)
    return ("holds" if ok else "does not hold"), (f"correlation of time with |D_f| {corr:.3f}; longest MultiDelete "
                                                  f"{by_size.max():.1f} s vs Retrain {retrain:.1f} s")


# (id, notebook whose numbers decide it, the decision)
CLAIMS = [
    ("table1_d_f", "06_baselines", _table1_d_f),
    ("table1_d_test", "06_baselines", _table1_d_test),
    ("table1_distance", "06_baselines", _table1_distance),
    ("table1_scrubbing", "06_baselines", _table1_scrubbing),
    ("table3_mi_ratio", "06_baselines", _table3_mi),
    ("ablation_md", "08_ablations", _ablation_md),
    ("ablation_mkr", "08_ablations", _ablation_mkr),
    ("ablation_ukr", "08_ablations", _ablation_ukr),
    ("efficiency", "09_efficiency", _efficiency),
]


def decide(results: pd.DataFrame, only: tuple[str, ...] | str | None = None) -> pd.DataFrame:
    """One row per (claim, task): `claim` (its statement), `verdict`, `evidence` (means ± 95% intervals), `seeds`.

    `results` has the columns of `pipeline.results.COLUMNS` (notebook, task, method, seed, df_size, metric,
    value); `only` keeps the claims of one notebook ("06_baselines") or the listed claim ids."""
    only = (only,) if isinstance(only, str) else only
    chosen = [c for c in CLAIMS if only is None or c[0] in only or c[1] in only]
    rows = []
    tasks = sorted(results["task"].unique()) if not results.empty else []
    for claim_id, notebook, decision in chosen:
        statement = decision.__doc__.strip().splitlines()[0]
        mine = results[results["notebook"] == notebook] if not results.empty else results
        if mine.empty:
            rows.append({"task": "", "claim": statement, "verdict": "not measured", "seeds": "",
                         "evidence": f"no numbers from notebook {notebook[:2]} in this run", "id": claim_id})
            continue
        for task in tasks:
            rows_task = mine[mine["task"] == task]
            if rows_task.empty:
                continue
            table = _Table(rows_task)
            verdict, evidence = decision(table)
            rows.append({"task": task, "claim": statement, "verdict": verdict, "seeds": _seeds(table),
                         "evidence": evidence, "id": claim_id})
    return pd.DataFrame(rows, columns=["task", "claim", "verdict", "seeds", "evidence", "id"])
