"""Choose the fast attack's polish temperature on training images, and show what the choice costs elsewhere.

    python benchmarks/bench_fast_attack.py [--images 100] [--conv-images 50]

`lib.fast_attack` sharpens its loss to a temperature T = tau x |logit margin at x|. Per model of the
peer comparison, on the correctly classified ones of a seeded subset of the *training* set (a
validation set for this choice: the comparison in chapter 2 runs on test images), runner-up targets,
one thread: the mean ratio of the fast attack's distortion to the reference (the exact QP on the
softmax models, the paper's attack elsewhere) for each tau, at POLISH_STEPS iterations. The choice
is the tau with the smallest worst-model mean ratio; `fast_attack.TEMPERATURE` must equal it (a
test checks the committed table). Writes data/results/peers/fast_temperature.json and prints a table.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import lib  # noqa: E402
from lib import attack, fast_attack, peers, zoo  # noqa: E402
from lib.attack_reference import exact_min_distortion_linear  # noqa: E402
from lib.data import atomic_write_bytes, fixed_subset  # noqa: E402

TAUS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5)
SEED = 1
OUT = peers.RESULTS_DIR / "fast_temperature.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100, help="training images per model (default 100)")
    parser.add_argument("--conv-images", type=int, default=50, help="the same for Conv (default 50)")
    args = parser.parse_args()
    lib.setup_torch(seed=0)
    ratios: dict[str, dict[str, float]] = {}
    with lib.one_thread(), tqdm(total=len(peers.MODELS) * (1 + len(TAUS)), desc="temperature", unit="run") as bar:
        for name in peers.MODELS:
            model = zoo.load(name, progress=False)
            x, y = fixed_subset(args.conv_images if name == "Conv" else args.images, train=True, seed=SEED)
            keep = attack.predict(model, x) == y
            x, y = x[keep], y[keep]
            target = attack.runner_up(model, x, y)
            bar.set_description(f"{name} reference")
            if name in peers.LINEAR_MODELS:
                reference = exact_min_distortion_linear(model, x, target).distortion
            else:
                reference = attack.lbfgs_attack(model, x, target).distortion
            bar.update()
            ratios[name] = {}
            for tau in TAUS:
                bar.set_description(f"{name} tau={tau:g}")
                found = fast_attack.fast_attack(model, x, target, temperature=tau)
                ratios[name][f"{tau:g}"] = float((found.distortion / reference).mean())
                bar.update()
    worst = {f"{tau:g}": max(r[f"{tau:g}"] for r in ratios.values()) for tau in TAUS}
    chosen = min(worst, key=worst.get)
    record = {"chosen": float(chosen), "criterion": "smallest worst-model mean ratio to the reference",
              "polish_steps": fast_attack.POLISH_STEPS, "ratios": ratios, "worst": worst,
              "provenance": {"split": "train", "seed": SEED, "images": args.images, "conv_images": args.conv_images,
                             "weights": {name: zoo.fingerprint(name) for name in peers.MODELS},
                             "fast_attack_version": fast_attack.VERSION, "date": peers.started_at(),
                             "command": "python benchmarks/bench_fast_attack.py " + " ".join(sys.argv[1:])}}
    atomic_write_bytes(OUT, (json.dumps(record, indent=1) + "\n").encode())
    print("\n| model | " + " | ".join(f"tau {t:g}" for t in TAUS) + " |")
    print("|---|" + "---|" * len(TAUS))
    for name, row in ratios.items():
        print(f"| {name} | " + " | ".join(f"{row[f'{t:g}']:.4f}" for t in TAUS) + " |")
    print("| worst | " + " | ".join(f"{worst[f'{t:g}']:.4f}" for t in TAUS) + " |")
    print(f"\nchosen: tau = {chosen} (fast_attack.TEMPERATURE = {fast_attack.TEMPERATURE:g}); written to {OUT}")


if __name__ == "__main__":
    main()
