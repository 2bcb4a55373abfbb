"""ours-walk's choices on more validation photos: the validation photos and their mirrored and shifted crops.

    python benchmarks/bench_walk_validation.py [--network efficientnet-lite0] [--lengths 0.25 ...]

`bench_polish_walk.py` chose ours-walk's step length and runs on three photos in one batch, where a walk's end
moves by up to a fifth with the batch's size alone. Here every crop of `lib.photos.VARIANTS` of the validation
photos (`natural_images.validation_photos`: 3 photos, 12 crops) is attacked toward "ostrich", one crop at a
time and on one thread, so no result depends on the batch: Brendel-Bethge-100 from DDN-100's start (the
reference, run as one batch as the peers are) and the walk from `fast_attack.gradient_start` at each of
`fast_attack.GRADIENT_LENGTHS`, for `peers.LONG_WALK_RUNS` runs at the chosen length and `peers.SHORT_RUNS` at
the others. Per walk and crop: the distortion of its closest success after every run and the gradient
evaluations spent by then (the start's included). `peers.VALIDATION_PEERS` (FMN*-300) run on the crops too,
so the walk is also measured against the closer of two peers per crop, as on the test photos. Written crop by crop to
data/results/peers/imagenet/walk_validation.json (resumable; two processes with different --lengths may share
it). `lib.peers.walk_validation` reads it: the budget of runs, and whether a multi-start over the lengths pays.
"""
from __future__ import annotations

import argparse
import fcntl
import json
import os
import sys
import tempfile
import warnings
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy loads (see bench_peers.py)

import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import lib  # noqa: E402
from lib import attack, fast_attack, imagenet, natural_images, peers, photos, polish_walk  # noqa: E402
from lib.data import atomic_write_bytes  # noqa: E402

PATH = peers.IMAGENET_DIR / "walk_validation.json"


def update(key: dict, change) -> dict:
    """Read the record under a lock, start it over if its key differs from today's, apply change(record), write it."""
    with open(Path(tempfile.gettempdir()) / "walk_validation.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        record = json.loads(PATH.read_text()) if PATH.exists() else {}
        if any(record.get(k) != v for k, v in key.items()):
            record = {**key, "results": {}}
        change(record)
        record.update(date=peers.started_at(), threads=1, versions=peers.environment()["versions"])
        atomic_write_bytes(PATH, (json.dumps(record, indent=1) + "\n").encode())
        return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--network", default=peers.IMAGENET_NETWORK, choices=imagenet.LITE_NAMES)
    parser.add_argument("--lengths", nargs="+", type=float, default=list(fast_attack.GRADIENT_LENGTHS))
    parser.add_argument("--no-reference", action="store_true",
                        help="leave Brendel-Bethge's reference to another process sharing the record")
    args = parser.parse_args()
    unknown = [length for length in args.lengths if length not in fast_attack.GRADIENT_LENGTHS]
    if unknown:
        parser.error(f"--lengths {unknown}: choose from fast_attack.GRADIENT_LENGTHS {fast_attack.GRADIENT_LENGTHS}")
    lib.setup_torch()
    names = natural_images.validation_photos(args.network)
    model = imagenet.load(args.network)
    x, labels = photos.load_variants(names)
    _, target = natural_images._targets(model, x, "ostrich")
    key = {"network": args.network, "photos": labels, "attack_version": attack.VERSION,
           "weights": imagenet.info(args.network).sha256, "walk_versions": peers.walk_versions(),
           "walk": {"step": polish_walk.STEP, "iterations": polish_walk.ITERATIONS,
                    "start_steps": fast_attack.GRADIENT_STEPS}}
    record = update(key, lambda r: None)

    if peers.WALKED not in record["results"] and not args.no_reference:
        start, start_x = peers.run_peer(model, args.network, x, target, list(range(len(x))), *peers.BB_START,
                                        rule="ostrich")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Brendel-Bethge's note that numba compiles its solver
            bb, bb_x = peers.run_peer(model, args.network, x, target, list(range(len(x))), "BB", 100, start=start_x,
                                      start_cost=start.cost, rule="ostrich")
        dist, success = peers.measure(model, x, bb_x, target)
        if not success.all():
            raise RuntimeError(f"{peers.WALKED} failed on {int((~success).sum())} crops")
        reference = {"distortion": peers._round(dist), "gradients": bb.gradients}
        record = update(key, lambda r: r["results"].setdefault(peers.WALKED, reference))
        print(f"{peers.WALKED}: {reference}", flush=True)

    for method, budget in peers.VALIDATION_PEERS:  # the other peer that is closest on some test photos
        label = f"{method}-{budget}"
        if label in record["results"] or args.no_reference:
            continue
        peer, peer_x = peers.run_peer(model, args.network, x, target, list(range(len(x))), method, budget,
                                      rule="ostrich")
        dist, success = peers.measure(model, x, peer_x, target)
        entry = {"distortion": [d if ok else None for d, ok in zip(peers._round(dist), success)],
                 "gradients": peer.gradients}
        record = update(key, lambda r, label=label, entry=entry: r["results"].setdefault(label, entry))
        print(f"{label}: {entry}", flush=True)

    runs = {length: peers.LONG_WALK_RUNS if length == fast_attack.GRADIENT_LENGTH else peers.SHORT_RUNS
            for length in args.lengths}
    bar = tqdm(total=sum(runs.values()) * len(x), desc="walk runs", unit="run")
    for length in args.lengths:
        label = peers.gradient_walk_label(length)
        done = record["results"].get(label, {}).get("images", {})
        todo = [i for i, crop in enumerate(labels) if len(done.get(crop, {}).get("distortion", [])) != runs[length]]
        bar.update(runs[length] * (len(labels) - len(todo)))
        if not todo:
            continue
        counted = peers.CountingModel(model)

        def walk(x_i, target_i, _, on_run, length=length) -> polish_walk.WalkResult:
            def counted_run(best: torch.Tensor) -> None:
                on_run(best)
                bar.update(1)
            return polish_walk.from_gradient_start(counted, x_i, target_i, length=length, rounds=runs[length] - 1,
                                                   on_run=counted_run)

        def on_image(j: int, walked: polish_walk.WalkResult, gradients: list[float], label=label, length=length) -> None:
            nonlocal record
            i, crop = todo[j], labels[todo[j]]
            if not peers.measure(model, x[i:i + 1], walked.result.x_adv, target[i:i + 1])[1].all():
                raise RuntimeError(f"{label} on {crop}: the walk found no success")
            entry = {"distortion": [peers._round(best.cpu().numpy())[0] for best in walked.trace], "gradients": gradients}

            def add(r: dict) -> None:
                row = r["results"].setdefault(label, {"images": {}})
                row.update(length=length, runs=runs[length])
                row["images"][crop] = entry

            record = update(key, add)
            tqdm.write(f"{label} {crop}: {entry['distortion'][-1]} after {runs[length]} runs, {gradients[-1]} gradients")

        with lib.one_thread():  # one crop at a time, so no end depends on the batch
            polish_walk.photo_by_photo(walk, x[todo], target[todo], spent=lambda: counted.gradient_evaluations,
                                       on_image=on_image)
    bar.close()
    if peers.WALKED in record["results"]:
        print(peers.walk_validation(record))


if __name__ == "__main__":
    main()
