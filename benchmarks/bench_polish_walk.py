"""A walk made of polishes (`lib.polish_walk`) on ImageNet: does restarting the polish past its end reach
Brendel-Bethge's pocket?

    python benchmarks/bench_polish_walk.py [--network efficientnet-lite0]

On the validation photos of `bench_sharp_temperature.py` toward "ostrich", one thread, the walk's defaults
(`polish_walk.STEP`, `ROUNDS`, `ITERATIONS`) from two starts: DDN-100's result (the start Brendel-Bethge gets in
`bench_polish_start.py`) and the book's own linearised start (`polish_walk.from_linearised`); each also with
step 0, the same runs restarted from their own ends, which says what the push past the end does. Then the
walk from the linearised start on log p_target (`on="probability"`) and from both own starts, the closer kept
(`polish_walk.from_both_starts`), and from `fast_attack.gradient_start` at each of `fast_attack.GRADIENT_LENGTHS`
(`polish_walk.from_gradient_start`: the rows that choose ours-walk's step length), and at the chosen length
(`fast_attack.GRADIENT_LENGTH`) for `peers.LONG_WALK_RUNS` runs instead (how many runs the walk needs on these
three photos; ours-walk's budget is chosen on more photos, by `bench_walk_validation.py`), and with the photos in other orders in the batch
(`peers.REORDER_SHIFTS`) and one photo at a time (`peers.SINGLE_WALK`): how far rounding alone moves a walk's
end. Per row: the
distortion of each photo's closest success after every run and the gradient evaluations per image spent by then
(the start's included). Written with provenance to data/results/peers/imagenet/polish_walk.json; finished rows
are kept (resumable) while DDN-100 gives the recorded start. `lib.peers.walk_table` reads it beside
polish_start.json's Brendel-Bethge row.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy loads (see bench_peers.py)

import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import lib  # noqa: E402
from lib import attack, fast_attack, imagenet, natural_images, peers, photos, polish_walk  # noqa: E402
from lib.data import atomic_write_bytes  # noqa: E402

PATH = peers.IMAGENET_DIR / "polish_walk.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--network", default=peers.IMAGENET_NETWORK, choices=imagenet.LITE_NAMES)
    args = parser.parse_args()
    lib.setup_torch()
    names = natural_images.validation_photos(args.network)
    model = imagenet.load(args.network)
    x, _ = photos.load(names)
    _, target = natural_images._targets(model, x, "ostrich")
    record = json.loads(PATH.read_text()) if PATH.exists() else {}
    key = {"network": args.network, "photos": names, "attack_version": attack.VERSION,
           "weights": imagenet.info(args.network).sha256,
           "walk": {"step": polish_walk.STEP, "rounds": polish_walk.ROUNDS, "iterations": polish_walk.ITERATIONS,
                    "linear_steps": polish_walk.LINEAR_STEPS}}
    if any(record.get(k) != v for k, v in key.items()):
        record = {**key, "results": {}}

    def write() -> None:
        record.update(date=peers.started_at(), threads=1, versions=peers.environment()["versions"],
                      command="python benchmarks/bench_polish_walk.py " + " ".join(sys.argv[1:]))
        atomic_write_bytes(PATH, (json.dumps(record, indent=1) + "\n").encode())

    start, start_x = peers.run_peer(model, args.network, x, target, list(range(len(x))), *peers.BB_START,
                                    rule="ostrich")
    start_label = f"{peers.BB_START[0]}-{peers.BB_START[1]}"
    start_dist = peers._round(peers.measure(model, x, start_x, target)[0])
    if record.get("start") not in (None, start_dist):
        print(f"{start_label} gives another start than the recorded one (another machine or library): recomputing all")
        record["results"] = {}
    record["start"] = start_dist
    rows = [(f"{start_label} + walk", start.gradients, 1.0), (f"{start_label} + walk, step 0", start.gradients, 0.0),
            ("linearised + walk", None, 1.0), ("linearised + walk, step 0", None, 0.0),
            (peers.PROBABILITY_WALK, None, 1.0), (peers.BOTH_WALK, None, 1.0)]
    rows += [(peers.gradient_walk_label(length), None, 1.0) for length in fast_attack.GRADIENT_LENGTHS]
    lengths = {peers.gradient_walk_label(length): length for length in fast_attack.GRADIENT_LENGTHS}
    rows.append((peers.LONG_WALK, None, 1.0))  # the chosen length's walk run on, to choose ours-walk's budget of runs
    # the chosen length's walk again with the photos in other orders: how far rounding alone moves a walk's end
    orders = {peers.reordered_walk_label(shift): torch.arange(len(x)).roll(shift) for shift in peers.REORDER_SHIFTS}
    rows += [(label, None, 1.0) for label in orders]
    rows.append((peers.SINGLE_WALK, None, 1.0))  # and one photo at a time: batches of 1 round differently
    for label in (peers.LONG_WALK, *orders, peers.SINGLE_WALK):
        lengths[label] = fast_attack.GRADIENT_LENGTH
        if record["results"].get(label, {}).get("start", {}).get("length") != fast_attack.GRADIENT_LENGTH:
            record["results"].pop(label, None)  # made at another length than today's choice
    runs = {label: (peers.LONG_WALK_RUNS if label == peers.LONG_WALK else polish_walk.ROUNDS + 1) for label, *_ in rows}
    bar = tqdm(total=sum(runs.values()), desc="walk runs", unit="run")
    for label, start_gradients, push in rows:
        if label in record["results"]:
            bar.update(runs[label])
            continue
        counted = peers.CountingModel(model)
        trace: list[dict] = []

        order = orders.get(label, torch.arange(len(x)))  # the batch's order of the photos
        back = order.argsort()

        def on_run(best: torch.Tensor) -> None:
            trace.append({"distortion": peers._round(best[back].cpu().numpy()),
                          "gradients": (start_gradients or 0) + counted.gradient_evaluations / len(x)})
            bar.update(1)

        step = polish_walk.STEP * push
        if label == peers.SINGLE_WALK:
            walked, spent = polish_walk.photo_by_photo(
                lambda x, target, _, on_run: polish_walk.from_gradient_start(counted, x, target, length=lengths[label],
                                                                             on_run=on_run),
                x, target, spent=lambda: counted.gradient_evaluations)
            for gradients, best in zip(spent, walked.trace):
                on_run(best)
                trace[-1]["gradients"] = gradients
        elif label in lengths:
            walked = polish_walk.from_gradient_start(counted, x[order], target[order], length=lengths[label],
                                                     step=step, rounds=runs[label] - 1, on_run=on_run)
            walked.result.x_adv = walked.result.x_adv[back]
        elif label == peers.BOTH_WALK:
            walked = polish_walk.from_both_starts(counted, x, target, step=step, on_run=on_run)
        elif label == peers.PROBABILITY_WALK:
            walked = polish_walk.from_linearised(counted, x, target, step=step, on_run=on_run, on="probability")
        elif start_gradients is None:
            walked = polish_walk.from_linearised(counted, x, target, step=step, on_run=on_run)
        else:
            walked = polish_walk.polish_walk(counted, x, start_x, target, step=step, on_run=on_run)
        dist, success = peers.measure(model, x, walked.result.x_adv, target)
        if not success.all():
            raise RuntimeError(f"{label}: the walk lost a success on {int((~success).sum())} photos")
        record["results"][label] = {"distortion": peers._round(dist), "trace": trace}
        if label in lengths:
            record["results"][label]["start"] = {"length": lengths[label], "steps": fast_attack.GRADIENT_STEPS}
        write()
        tqdm.write(f"{label}: {record['results'][label]['distortion']}, "
                   f"{trace[-1]['gradients']:.0f} gradients / image")
    bar.close()
    write()
    print(peers.walk_table(record, json.loads((peers.IMAGENET_DIR / "polish_start.json").read_text())))


if __name__ == "__main__":
    main()
