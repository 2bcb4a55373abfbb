"""Where the ImageNet shortfall comes from: the paper's local solver from the start Brendel-Bethge gets.

    python benchmarks/bench_polish_start.py [--network efficientnet-lite0] [--iterations 100 300]

On the validation photos of `bench_sharp_temperature.py` (the bundled photos the comparison does not use), toward
"ostrich", one thread: Foolbox's DDN-100, then from its result (a) `attack.polish` (box-constrained L-BFGS on the
paper's penalty problem with the sharpened loss, c from the multiplier, at each iteration budget) and (b)
Brendel-Bethge-100, the comparison's boundary walker, started from the same points. Then why the polish stops
where it does: (c) the longest polish again without its stopping tolerances (pgtol = ftol = 0), (d) the same in
float64, and (e) the polish started from Brendel-Bethge's end instead of DDN's. Last, (f) whether the polish's end
and Brendel-Bethge's lie in one stretch of the target's region: the target margin on the straight segment between
them, their distance, how far each has moved from DDN's start, and how closely r lines up with the margin's gradient
at each (`peers.alignment`). Distortions and gradient
evaluations per image (the starts' included) are written with provenance to
data/results/peers/imagenet/polish_start.json; finished entries are kept (resumable) while DDN-100 gives the same
start, and all are recomputed when it does not. Ours-sharp's own c search on the same photos is in
sharp_temperature.json. `lib.peers.polish_start_table` reads both, `lib.peers.pockets` the last part.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import warnings
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy loads (see bench_peers.py)

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import lib  # noqa: E402
from lib import attack, imagenet, natural_images, peers, photos  # noqa: E402
from lib.data import atomic_write_bytes  # noqa: E402

PATH = peers.IMAGENET_DIR / "polish_start.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--network", default=peers.IMAGENET_NETWORK, choices=imagenet.LITE_NAMES)
    parser.add_argument("--iterations", nargs="+", type=int, default=[100, 300])
    args = parser.parse_args()
    lib.setup_torch()
    names = natural_images.validation_photos(args.network)
    model = imagenet.load(args.network)
    x, _ = photos.load(names)
    _, target = natural_images._targets(model, x, "ostrich")
    record = json.loads(PATH.read_text()) if PATH.exists() else {}
    key = {"network": args.network, "photos": names, "attack_version": attack.VERSION,
           "weights": imagenet.info(args.network).sha256}
    if any(record.get(k) != v for k, v in key.items()):
        record = {**key, "results": {}}

    def write() -> None:
        record.update(date=peers.started_at(), threads=1, versions=peers.environment()["versions"],
                      command="python benchmarks/bench_polish_start.py " + " ".join(sys.argv[1:]))
        atomic_write_bytes(PATH, (json.dumps(record, indent=1) + "\n").encode())

    def save(label: str, x_adv: torch.Tensor, gradients: float) -> None:
        dist, _ = peers.measure(model, x, x_adv, target)
        record["results"][label] = {"distortion": peers._round(dist), "gradients": gradients}
        write()
        print(f"{label}: {record['results'][label]}", flush=True)

    start, start_x = peers.run_peer(model, args.network, x, target, list(range(len(x))), *peers.BB_START,
                                    rule="ostrich")
    start_label = f"{peers.BB_START[0]}-{peers.BB_START[1]}"
    previous = record["results"].get(start_label)
    if previous is not None and previous["distortion"] != peers._round(peers.measure(model, x, start_x, target)[0]):
        print(f"{start_label} gives another start than the recorded one (another machine or library): recomputing all")
        record["results"] = {}
        record.pop("basins", None)
    save(start_label, start_x, start.gradients)
    for iterations in args.iterations:
        label = f"{start_label} + polish-{iterations}"
        if label in record["results"]:
            continue
        polished, cost = peers._timed(model, lambda m: attack.polish(m, x, start_x, target, max_iter=iterations).x_adv,
                                      len(x))
        save(label, polished, start.gradients + cost.gradients)
    @functools.cache
    def walked() -> tuple[peers.PeerResult, torch.Tensor]:
        """Brendel-Bethge-100 from DDN's start, run once however many parts below need its end."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Brendel-Bethge's note that numba compiles its solver
            return peers.run_peer(model, args.network, x, target, list(range(len(x))), "BB", 100, start=start_x,
                                  start_cost=start.cost, rule="ostrich")

    label = f"{start_label} + BB-100"
    if label not in record["results"]:
        bb, bb_x = walked()
        save(label, bb_x, bb.gradients)
    longest = max(args.iterations)
    label = f"{start_label} + polish-{longest}, no stopping tolerances"
    if label not in record["results"]:
        polished, cost = peers._timed(model, lambda m: attack.polish(m, x, start_x, target, max_iter=longest,
                                                                     pgtol=0.0, ftol=0.0).x_adv, len(x))
        save(label, polished, start.gradients + cost.gradients)
    label = f"{start_label} + polish-{longest}, no stopping tolerances, float64"
    if label not in record["results"]:
        model64, x64, start64 = model.double(), x.double(), start_x.double()
        polished, cost = peers._timed(model64, lambda m: attack.polish(m, x64, start64, target, max_iter=longest,
                                                                       pgtol=0.0, ftol=0.0).x_adv, len(x))
        model.float()
        save(label, polished.float(), start.gradients + cost.gradients)
    label = f"{start_label} + BB-100 + polish-{min(args.iterations)}"
    if label not in record["results"]:
        bb, bb_x = walked()
        polished, cost = peers._timed(model, lambda m: attack.polish(m, x, bb_x, target,
                                                                     max_iter=min(args.iterations)).x_adv, len(x))
        save(label, polished, bb.gradients + cost.gradients)
    if "travel" not in record.get("basins", {}):
        shortest = f"{start_label} + polish-{min(args.iterations)}"
        polished = attack.polish(model, x, start_x, target, max_iter=min(args.iterations)).x_adv
        _, bb_x = walked()
        if peers._round(peers.measure(model, x, polished, target)[0]) != record["results"][shortest]["distortion"]:
            print(f"warning: {shortest} ends elsewhere than its recorded run")
        walked_label = f"{start_label} + BB-100"
        scale = (bb_x - x).flatten(1).norm(dim=1)
        separation = ((polished - bb_x).flatten(1).norm(dim=1) / scale).tolist()
        travel = {label: peers._round(((end - start_x).flatten(1).norm(dim=1) / scale).numpy(), 4)
                  for label, end in ((shortest, polished), (walked_label, bb_x))}
        record["basins"] = {
            "between": [shortest, walked_label], "points": list(peers.SEGMENT_POINTS),
            "margins": [peers._round(m, 4) for m in peers.segment_margins(model, polished, bb_x, target)],
            "separation": peers._round(separation, 4), "travel": travel,
            "alignment": {shortest: peers._round(peers.alignment(model, x, polished, target), 4),
                          walked_label: peers._round(peers.alignment(model, x, bb_x, target), 4)}}
        write()
        print("basins:", record["basins"], flush=True)
    print(peers.pockets(record))
    print(peers.polish_start_table(record, json.loads((peers.IMAGENET_DIR / "sharp_temperature.json").read_text())))


if __name__ == "__main__":
    main()
