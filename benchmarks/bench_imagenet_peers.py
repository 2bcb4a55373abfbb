"""The attack at ImageNet scale: ours and ours-fast beside Foolbox 3's DDN, C&W, FMN and Brendel-Bethge on photos.

    python benchmarks/bench_imagenet_peers.py [--network efficientnet-lite0] [--rules ostrich runner-up]
                                              [--methods NAME ...] [--fresh] [--device cuda]

Every method attacks the photos of the natural-images chapter (those all three EfficientNet-Lite networks
classify correctly, `lib.natural_images.used_photos`) on one network, toward "ostrich" and toward the
runner-up, on one thread, over the budgets of `lib.peers.IMAGENET_BUDGETS`; the walks (ours-walk, DDN+walk)
one photo at a time, since a walk's end moves with the batch's size. Each method is timed and its
passes counted (`lib.peers.CountingModel`): gradient evaluations per image do not depend on the machine,
seconds do. Each (rule, method, budget) is written to data/results/peers/imagenet/NETWORK_RULE.json as soon
as it finishes, so an interrupted run resumes (`--fresh` starts over). Ends with the verdicts of
`lib.peers.imagenet_findings`. With `--device cuda` the results go to data/results/peers/imagenet/cuda/.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy loads (see bench_peers.py)

import numpy as np  # noqa: E402
import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import lib  # noqa: E402
from lib import attack, fast_attack, findings, imagenet, natural_images, peers, photos, polish_walk  # noqa: E402


def plan(methods: list[str]) -> list[tuple[str, int]]:
    """The (method, budget) pairs, DDN before Brendel-Bethge and DDN+walk (its start)."""
    order = [peers.OURS, peers.SHARP, peers.FAST, peers.WALK, "DDN", "BB", peers.WALK_DDN, "C&W", "FMN", peers.FMN_FIXED]
    return [(m, b) for m in order if m in methods for b in peers.IMAGENET_BUDGETS.get(m, ())]


def provenance(network: str, names: list[str], started: str, device: str) -> dict:
    """Where a network's results came from: weights, attack versions, photos, libraries, machine, dates."""
    return {"weights": imagenet.info(network).sha256, "attack_version": attack.VERSION,
            "fast_attack_version": fast_attack.VERSION, "walk_versions": peers.walk_versions(),
            "walk_batches": peers.IMAGENET_WALK_BATCHES, "seed": 0, "split": "photos",
            "requested_images": len(names), "photos": names, "threads": 1, **peers.environment(),
            "started": started, "date": peers.started_at(),
            "command": "python benchmarks/bench_imagenet_peers.py " + " ".join(sys.argv[1:]),
            "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
            "warm_up": "each method ran once, untimed, on one photo before it was timed",
            "timing": "wall seconds of the attack call over all photos, one torch thread; passes counted per image"}


def current(network: str, rule: str, names: list[str], folder: Path) -> peers.PeerRun | None:
    """The saved run if it was made with today's weights and photos, else None; ours dropped if the attack changed."""
    try:
        run = peers.load(network, folder, rule)
    except (FileNotFoundError, ValueError):
        return None
    if run.provenance["weights"] != imagenet.info(network).sha256 or run.provenance.get("photos") != names:
        return None
    versions = dict(attack_version=attack.VERSION, fast_attack_version=fast_attack.VERSION)
    if any(run.provenance[k] != v for k, v in versions.items()):  # the peers' results still hold; ours are redone
        run.results = [r for r in run.results if r.method not in peers.OWN]
        run.provenance.update(versions)
    peers.drop_stale_walks(run)
    if run.provenance.get("walk_batches") != peers.IMAGENET_WALK_BATCHES:  # walked in one batch: ends that depend on its size
        run.results = [r for r in run.results if r.method not in (peers.WALK, peers.WALK_DDN)]
        run.provenance["walk_batches"] = peers.IMAGENET_WALK_BATCHES
    return run


def run_rule(network: str, rule: str, names: list[str], methods: list[str], bar: tqdm, fresh: bool, device: str,
             folder: Path) -> peers.PeerRun:
    """Every pending (method, budget) toward `rule`, saving after each."""
    model = imagenet.load(network).to(device)
    x, _ = photos.load(names)
    x = x.to(device)
    label, target = natural_images._targets(model, x, rule)
    images = [photos.NAMES.index(n) for n in names]
    run = None if fresh else current(network, rule, names, folder)
    if run is not None and not torch.equal(torch.as_tensor(run.targets), target.cpu()):
        raise RuntimeError(f"{network} {rule}: the saved targets differ from today's")
    if run is None:
        run = peers.PeerRun(network, images, label.cpu().numpy(), target.cpu().numpy(), [], rule=rule)
        run.provenance = provenance(network, names, peers.started_at(), device)
    done = {(r.method, r.budget) for r in run.results}
    todo = [p for p in plan(methods) if p not in done]
    bar.update(len(plan(methods)) - len(todo))
    starts: dict[tuple[str, int], tuple[torch.Tensor, peers.Cost]] = {}
    warmed: set[str] = set()
    for method, budget in todo:
        bar.set_description(f"{network} {rule} {method}-{budget}")
        start, start_cost = None, None
        if method in peers.FROM_DDN:
            if peers.BB_START not in starts:  # DDN-100 ran in an earlier session: recompute its images
                result, x_adv = peers.run_peer(model, network, x, target, images, *peers.BB_START, rule=rule)
                starts[peers.BB_START] = (x_adv, result.cost)
            start, start_cost = starts[peers.BB_START]
        if method not in warmed:  # one photo, untimed: numba compiles, the allocator grows
            if method in peers.OWN:
                peers.run_own(model, network, x[:1], target[:1], images[:1], method, 1, rule,
                              start=None if start is None else start[:1])
            else:
                peers.run_peer(model, network, x[:1], target[:1], images[:1], method, min(peers.IMAGENET_BUDGETS[method]),
                               start=None if start is None else start[:1], rule=rule)
            warmed.add(method)
        if method in peers.OWN:
            result, x_adv = peers.run_own(model, network, x, target, images, method, budget, rule, start=start,
                                          start_cost=start_cost, one_at_a_time=True)
        else:
            result, x_adv = peers.run_peer(model, network, x, target, images, method, budget, start=start,
                                           start_cost=start_cost, rule=rule)
            if (method, budget) == peers.BB_START:
                starts[method, budget] = (x_adv, result.cost)
        result.alignment = peers.alignment(model, x, x_adv, target)  # untimed, uncounted
        run.results.append(result)
        run.provenance["date"] = peers.started_at()
        peers.save(run, folder)
        bar.update()
    for result in [r for r in run.results if r.alignment is None and r.method not in (*peers.OWN, "BB")]:
        bar.set_description(f"{network} {rule} {result.label}: where it ends")  # saved before alignment was
        _, x_adv = peers.run_peer(model, network, x, target, images, result.method, result.budget, rule=rule)
        again, _ = peers.measure(model, x, x_adv, target)
        if not np.allclose(again, result.distortion, rtol=1e-5):
            raise RuntimeError(f"{result.label} did not repeat its distortions: {again} vs {result.distortion}")
        result.alignment = peers.alignment(model, x, x_adv, target)
        peers.save(run, folder)
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--network", default=peers.IMAGENET_NETWORK, choices=imagenet.LITE_NAMES)
    parser.add_argument("--rules", nargs="+", default=list(natural_images.RULES), choices=natural_images.RULES)
    parser.add_argument("--methods", nargs="+", default=list(peers.IMAGENET_BUDGETS), choices=list(peers.IMAGENET_BUDGETS))
    peers.add_run_arguments(parser)
    args = parser.parse_args()
    folder = peers.results_folder(parser, args, peers.IMAGENET_DIR)
    lib.setup_torch()
    warnings.filterwarnings("ignore", message=".*optimizer needs to be compiled.*")
    warnings.filterwarnings("ignore", category=UserWarning, module="eagerpy")
    names = natural_images.load_attacks(args.network, natural_images.RULES[0]).photos  # the chapter's photos
    start = time.perf_counter()
    runs = []
    with lib.one_thread(), tqdm(total=len(args.rules) * len(plan(args.methods)), desc="peers", unit="run") as bar:
        for rule in args.rules:
            runs.append(run_rule(args.network, rule, names, args.methods, bar, args.fresh, args.device, folder))
    print(f"\n{len(names)} photos ({', '.join(names)}); this session {(time.perf_counter() - start) / 60:.1f} min\n")
    for run in runs:
        print(peers.imagenet_table(run).to_string(index=False), "\n")
    for f in peers.imagenet_findings(runs):
        print(f"- {f.claim}: {findings.verdict(f)} ({f.ours}; {f.paper})")


if __name__ == "__main__":
    main()
