"""Tables that put our numbers beside the paper's (Table 1 and the zoo overview)."""
from __future__ import annotations

import pandas as pd
import torch
from tqdm import tqdm

from . import attack, attack_reference, cache, data, models, paper, zoo
from .train import classification_loss, error_rate, fit, predict


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
    """Every zoo model: description, training set, its error on that set and on the test set, and training time."""
    rows = []
    for name in zoo.NAMES:
        rec = zoo.record(name)
        own = {"P1": "P1_error", "P2": "P2_error"}.get(rec["spec"]["train_on"], "train_error")
        rows.append({"model": name, "description": rec["spec"]["description"], "trained on": rec["spec"]["train_on"],
                     "error on its training set %": rec[own], "test error %": rec["test_error"],
                     "training s": rec["train_seconds"]})
    return pd.DataFrame(rows)


def adversarial_set(name: str, n: int = 1000, train: bool = True, seed: int = 0, target: str = "runner-up",
                    chunk: int = 250) -> dict:
    """Minimal adversarial examples for a fixed seeded subset, made on model `name`; cached on disk.

    `target` is the rule of `attack.min_distortion` (one of `attack.TARGET_RULES`). `seed` picks the
    subset and seeds the "random" rule's draw: the chunk starting at image i draws with seed + i, so
    chunks do not repeat one another's draws. Returns tensors x, y, x_adv, success, distortion,
    target, c, misclassified (one entry per image; misclassified images were not attacked and have
    distortion 0).
    """
    def compute() -> dict:
        model = zoo.load(name)
        x, y = data.fixed_subset(n, train=train, seed=seed)
        parts = []
        for i in tqdm(range(0, n, chunk), desc=f"attacking {name}", leave=False):
            parts.append(attack.min_distortion(model, x[i : i + chunk], y[i : i + chunk], target=target,
                                               seed=seed + i))
        return {"x": x, "y": y, **{f: torch.cat([getattr(p, f) for p in parts]) for f in
                                   ("x_adv", "success", "distortion", "target", "c", "misclassified")}}

    return cache.cached("adversarial", compute, model=name, n=n, train=train, seed=seed, target=target,
                        chunk=chunk, attack=attack.VERSION, weights=zoo.fingerprint(name))


def exact_linear_minimum(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """For a linear model, the exact minimal distortion over all nine wrong labels, per image."""
    wrong = torch.stack([torch.tensor([t for t in range(10) if t != int(label)]) for label in y])
    exact = attack_reference.exact_min_distortion_linear(model, x.repeat_interleave(9, 0), wrong.flatten())
    return exact.distortion.view(len(x), 9).min(1).values


def linear_optimality_gap(name: str, n: int = 100, seed: int = 0) -> dict:
    """Attack distortion (best of nine targets) and the exact QP minimum, per image, for a linear zoo model."""
    adv = adversarial_set(name, n=n, train=True, seed=seed, target="best")
    correct = adv["success"] & ~adv["misclassified"]
    exact = exact_linear_minimum(zoo.load(name), adv["x"][correct], adv["y"][correct])
    return {"attack": adv["distortion"][correct], "exact": exact}


def c_sweep(name: str, index: int = 0, cs: tuple[float, ...] = tuple(10.0 ** k for k in range(-2, 4)) + (
        0.3, 3.0, 30.0, 300.0), seed: int = 0) -> dict:
    """One test image attacked towards its runner-up label at each fixed c (the penalty minimisers)."""
    def compute() -> dict:
        model = zoo.load(name)
        x, y = data.fixed_subset(max(index + 1, 100), train=False, seed=seed)
        x, y = x[index : index + 1], y[index : index + 1]
        target = attack.runner_up(model, x, y)
        c = torch.tensor(sorted(cs), dtype=torch.float32)
        x_adv = attack.minimise_penalty(model, x.expand(len(c), -1, -1, -1), target.expand(len(c)), c)
        probs = model(x_adv).softmax(1)
        return {"x": x[0], "y": y[0], "target": target[0], "c": c, "x_adv": x_adv, "probs": probs,
                "distortion": attack.distortion(x.expand_as(x_adv), x_adv),
                "success": probs.argmax(1) == target[0]}

    return cache.cached("c-sweep", compute, model=name, index=index, cs=sorted(cs), seed=seed, attack=attack.VERSION,
                        weights=zoo.fingerprint(name))


def softmax_decay_sweep(lambdas: tuple[float, ...] = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0), epochs: int = 5,
                        n: int = 200, seed: int = 0) -> dict:
    """Softmax models trained with each weight decay: test error, exact mean minimal distortion, weights (cached)."""
    def compute() -> dict:
        train_x, train_y = data.load_mnist(train=True)
        test_x, test_y = data.load_mnist(train=False)
        x, y = data.fixed_subset(n, train=False, seed=seed)
        errors, distortions, weights, examples = [], [], [], []
        for lam in tqdm(lambdas, desc="softmax weight-decay sweep", leave=False):
            torch.manual_seed(seed)
            model = models.softmax_classifier()
            fit(model, train_x, train_y, classification_loss(lambda m, lam=lam: models.weight_decay_penalty(m, (lam,))),
                epochs=epochs, seed=seed, progress=False)
            model.eval()
            errors.append(error_rate(model, test_x, test_y))
            correct = predict(model, x) == y
            exact = exact_linear_minimum(model, x[correct], y[correct])
            distortions.append(exact.mean().item())
            weights.append(model[1].weight.detach().clone())
            examples.append(attack.min_distortion(model, x[:1], y[:1], target="runner-up").x_adv[0])
        return {"lambdas": torch.tensor(lambdas, dtype=torch.float64), "test_error": torch.tensor(errors),
                "mean_distortion": torch.tensor(distortions), "weights": torch.stack(weights),
                "x": x[0], "x_adv": torch.stack(examples)}

    return cache.cached("softmax-decay-sweep", compute, lambdas=list(lambdas), epochs=epochs, n=n, seed=seed,
                        attack=attack.VERSION)


def noise_accuracy(names: tuple[str, ...] = ("softmax-1e-4", "N200-200-10"), stddev: float = 1.0, n: int = 1000,
                   seed: int = 0) -> pd.DataFrame:
    """Accuracy on seeded training images plus Gaussian noise, clipped to [0,1] and not, beside Figure 7's 51%."""
    x, y = data.fixed_subset(n, train=True, seed=seed)
    rows = []
    for clip in (True, False):
        noisy, _ = data.gaussian_noise(x, stddev, seed=seed, clip=clip)
        rows.append({"noise": "clipped to [0,1]" if clip else "not clipped", "stddev": stddev, "images": n,
                     **{f"{name} accuracy %": round(100 - error_rate(zoo.load(name), noisy, y), 1) for name in names},
                     "distortion": round(attack.distortion(x, noisy).mean().item(), 3),
                     "paper accuracy %": paper.FIGURE7["noise accuracy %"]})
    return pd.DataFrame(rows)
