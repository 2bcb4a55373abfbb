"""Tables that put our numbers beside the paper's (Table 1 and the zoo overview)."""
from __future__ import annotations

import pandas as pd
import torch
from tqdm.auto import tqdm

from . import attack, cache, data, paper, zoo


def table1_errors() -> pd.DataFrame:
    """Table 1's error columns: our training and test error (computed now) beside the paper's."""
    rows = []
    for name in paper.TABLE1_MODELS:
        ours = zoo.errors(zoo.load(name))
        ref = paper.TABLE1[name]
        rows.append({
            "model": name, "paper name": ref["label"],
            "train error %": ours["train_error"], "paper train %": ref["train_error"],
            "test error %": ours["test_error"], "paper test %": ref["test_error"],
            "test gap (pp)": round(ours["test_error"] - ref["test_error"], 2),
        })
    return pd.DataFrame(rows)


def table3_errors() -> pd.DataFrame:
    """Table 3's error columns (P1, P2, test) for the cross-training-set models, beside the paper's."""
    rows = []
    for name in paper.TABLE3_MODELS:
        ours = zoo.errors(zoo.load(name))
        ref = paper.TABLE3[name]
        rows.append({"model": name, "paper name": ref["label"],
                     **{f"{k} %": ours[k] for k in ("P1_error", "P2_error", "test_error")},
                     **{f"paper {k} %": ref[k] for k in ("P1_error", "P2_error", "test_error")}})
    return pd.DataFrame(rows)


def zoo_overview() -> pd.DataFrame:
    """Every zoo model: description, training set, recorded errors and training time."""
    rows = []
    for name in zoo.NAMES:
        rec = zoo.record(name)
        rows.append({"model": name, "description": rec["spec"]["description"], "trained on": rec["spec"]["train_on"],
                     "train error %": rec["train_error"], "test error %": rec["test_error"],
                     "training s": rec["train_seconds"]})
    return pd.DataFrame(rows)


def adversarial_set(name: str, n: int = 1000, train: bool = True, seed: int = 0, target: str = "runner-up",
                    chunk: int = 250) -> dict:
    """Minimal adversarial examples for a fixed seeded subset, made on model `name`; cached on disk.

    Returns tensors x, y, x_adv, success, distortion, target, c (one entry per image).
    """
    def compute() -> dict:
        model = zoo.load(name)
        x, y = data.fixed_subset(n, train=train, seed=seed)
        parts = []
        for i in tqdm(range(0, n, chunk), desc=f"attacking {name}", leave=False):
            parts.append(attack.min_distortion(model, x[i : i + chunk], y[i : i + chunk], target=target))
        return {"x": x, "y": y, **{f: torch.cat([getattr(p, f) for p in parts]) for f in
                                   ("x_adv", "success", "distortion", "target", "c")}}

    return cache.cached("adversarial", compute, model=name, n=n, train=train, seed=seed, target=target,
                        attack=attack.VERSION)


def table1_distortions(n: int = 1000, seed: int = 0, target: str = "runner-up") -> pd.DataFrame:
    """Table 1's last column: mean minimal distortion on a seeded training subset, beside the paper's."""
    rows = []
    for name in paper.TABLE1_MODELS:
        adv = adversarial_set(name, n=n, train=True, seed=seed, target=target)
        ref = paper.TABLE1[name]
        mean = adv["distortion"][adv["success"]].mean().item()
        rows.append({"model": name, "paper name": ref["label"], "images": n,
                     "success %": round(100 * adv["success"].double().mean().item(), 2),
                     "mean distortion": round(mean, 4), "paper distortion": ref["distortion"],
                     "ratio ours/paper": round(mean / ref["distortion"], 2)})
    return pd.DataFrame(rows)
