"""Chooses loss="sharp"'s temperature for the ImageNet comparison on photos it does not use.

    python benchmarks/bench_sharp_temperature.py [--network efficientnet-lite0] [--temperatures 0.003 0.01 0.03]
                                                 [--warm]

The comparison (`bench_imagenet_peers.py`) attacks the photos all three networks classify correctly; the
other bundled photos (rocket, flower, grace_hopper) are the validation set. Each temperature (a fraction of
|logit margin at x|, `attack.SHARP_TEMPERATURE`) runs `attack.lbfgs_attack(loss="sharp")` toward "ostrich"
and the runner-up on them, one thread (with `--warm`, also with `warm_start=True`); the mean distortion per
setting is written, with provenance, to data/results/peers/imagenet/sharp_temperature.json (resumable:
finished settings are kept). `lib.peers.SHARP_OPTIONS` holds the chosen one.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import lib  # noqa: E402
from lib import attack, imagenet, natural_images, peers, photos  # noqa: E402
from lib.data import atomic_write_bytes  # noqa: E402

PATH = peers.IMAGENET_DIR / "sharp_temperature.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--network", default=peers.IMAGENET_NETWORK, choices=imagenet.LITE_NAMES)
    parser.add_argument("--temperatures", nargs="+", type=float, default=[0.003, 0.01, 0.03])
    parser.add_argument("--warm", action="store_true", help="also run each temperature with warm_start=True")
    args = parser.parse_args()
    lib.setup_torch()
    names = natural_images.validation_photos(args.network)
    model = imagenet.load(args.network)
    x, _ = photos.load(names)
    record = json.loads(PATH.read_text()) if PATH.exists() else {}
    if record.get("photos") != names or record.get("attack_version") != attack.VERSION:
        record = {"network": args.network, "photos": names, "attack_version": attack.VERSION, "results": {}}
    settings = [(t, False) for t in args.temperatures] + [(t, True) for t in args.temperatures if args.warm]
    for temperature, warm in settings:
        key = peers.sharp_key(temperature, warm)
        if key in record["results"]:
            continue
        attack.SHARP_TEMPERATURE, row, start = temperature, {}, time.perf_counter()
        for rule in natural_images.RULES:
            _, target = natural_images._targets(model, x, rule)
            counted = peers.CountingModel(model)
            with lib.one_thread():
                result = attack.lbfgs_attack(counted, x, target, loss="sharp", warm_start=warm)
            dist = attack.distortion(x, result.x_adv).double().numpy()
            row[rule] = {"distortion": [float(f"{d:.6g}") for d in np.where(result.success.numpy(), dist, np.inf)],
                         "gradients": counted.gradient_evaluations / len(x)}
            print(f"{key}, {rule}: {row[rule]['distortion']}", flush=True)
        row["seconds"] = round(time.perf_counter() - start, 1)
        record["results"][key] = row
        record.update(date=peers.started_at(), torch=torch.__version__, threads=1,
                      command="python benchmarks/bench_sharp_temperature.py " + " ".join(sys.argv[1:]))
        atomic_write_bytes(PATH, (json.dumps(record, indent=1) + "\n").encode())
    means = peers.sharp_validation(record)
    print("mean distortion over both targets:", means, "-> chosen", min(means, key=means.get))


if __name__ == "__main__":
    main()
