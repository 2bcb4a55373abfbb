"""The attack since 2013: ours, ours-fast and the walk of polishes beside Foolbox 3 (DDN, Brendel-Bethge, C&W, FMN) and torchattacks (FAB).

    python benchmarks/bench_peers.py [--images 100] [--conv-images 100] [--models NAME ...] [--fresh] [--device cuda]

Every method attacks the same correctly classified test images (the seeded subset of `--images`,
`--conv-images` for Conv) towards the same runner-up labels, on one thread, over the step budgets of
`lib.peers.BUDGETS`; the softmax models add the exact QP. Each (model, method, budget) is written to
data/results/peers/MODEL.json as soon as it finishes, so an interrupted run resumes where it stopped
(`--fresh` starts over). Before a method is timed on a model it runs once, untimed, on two images:
that is where Brendel-Bethge compiles its numba solver and the allocator grows its heap. Ends with
the summary table and the verdicts, also written to data/results/peers/summary.md. With `--device cuda`
every attack runs on the GPU (the exact QP's scipy solver on the CPU) and the results go to
data/results/peers/cuda/ instead: the book reads the CPU results, the GPU ones sit beside them.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

# Before numpy loads: OpenBLAS threads would spin against torch's on a small machine (see bench_attack.py).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import lib  # noqa: E402
from lib import attack, fast_attack, findings, peers, polish_walk, zoo  # noqa: E402
from lib.data import load_mnist  # noqa: E402

SEED = 0


def plan(name: str, budgets: dict[str, tuple[int, ...]]) -> list[tuple[str, int]]:
    """The (method, budget) pairs run on a model: ours first, DDN before Brendel-Bethge and DDN+walk (its start)."""
    order = [peers.OURS, peers.SHARP, peers.FAST, peers.WALK, "DDN", "BB", peers.WALK_DDN, "C&W", "FMN", peers.FMN_FIXED,
             "FAB", peers.EXACT]
    pairs = [(m, b) for m in order for b in budgets.get(m, ())]
    if name not in peers.LINEAR_MODELS:
        pairs = [(m, b) for m, b in pairs if m != peers.EXACT]
    return pairs


def provenance(name: str, requested: int, started: str, device: str) -> dict:
    """Where a model's results came from: weights, attack version, images, versions, machine, dates."""
    return {"weights": zoo.fingerprint(name), "attack_version": attack.VERSION,
            "fast_attack_version": fast_attack.VERSION, "walk_versions": peers.walk_versions(), "seed": SEED, "split": "test",
            "requested_images": requested, "threads": 1, **peers.environment(), "started": started,
            "date": peers.started_at(), "command": "python benchmarks/bench_peers.py " + " ".join(sys.argv[1:]),
            "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
            "warm_up": "each method ran once, untimed, on two images before it was timed",
            "timing": "wall seconds of the attack call over all images, one torch thread, BLAS on one thread"}


def resumable(name: str, requested: int, folder: Path) -> peers.PeerRun | None:
    """The model's saved run if it was made with today's weights, attack VERSION and image count, else None."""
    try:
        run = peers.load(name, folder)
    except (FileNotFoundError, ValueError):
        return None
    if not peers.is_current(run) or run.provenance["requested_images"] != requested:
        return None
    peers.drop_stale_walks(run)  # the peers' and ours' results still hold; the walks are redone
    return run


def run_model(name: str, requested: int, budgets: dict, bar: tqdm, fresh: bool, device: str,
              folder: Path) -> peers.PeerRun:
    """Every pending (method, budget) on one model, saving after each (to `folder`)."""
    model = zoo.load(name, progress=False).to(device)
    run = None if fresh else resumable(name, requested, folder)
    started = run.provenance.get("started", peers.started_at()) if run else peers.started_at()
    done = {(r.method, r.budget) for r in run.results} if run else set()
    todo = [p for p in plan(name, budgets) if p not in done]
    bar.update(len(plan(name, budgets)) - len(todo))
    if not todo:
        return run
    if run is None:  # ours fixes the images and the targets
        images, x, y = peers.attacked_images(model, requested, seed=SEED)
        peers.run_ours(model, name, x[:2], y[:2], images[:2])  # warm-up
        bar.set_description(f"{name} ours")
        ours, result = peers.run_ours(model, name, x, y, images, c_steps=peers.BUDGETS[peers.OURS][0])
        run = peers.PeerRun(name, images, y.cpu().numpy(), result.target.cpu().numpy(), [ours])
        run.provenance = provenance(name, requested, started, device)
        peers.save(run, folder)
        bar.update()
        todo = [p for p in todo if p[0] != peers.OURS]
    test_x, test_y = load_mnist(train=False)
    x, y = test_x[torch.as_tensor(run.images)].to(device), test_y[torch.as_tensor(run.images)].to(device)
    target = torch.as_tensor(run.targets).to(device)
    if not torch.equal(y.cpu(), torch.as_tensor(run.labels)):
        raise RuntimeError(f"{name}: the saved labels do not match the test set's")
    adversarial: dict[tuple[str, int], torch.Tensor] = {}
    warmed: set[str] = set()
    for method, budget in todo:
        bar.set_description(f"{name} {method}-{budget}")
        start, start_cost = None, None
        if method in peers.FROM_DDN:
            start = adversarial.get(peers.BB_START)
            if start is None:  # DDN-100 ran in an earlier session: recompute its images (untimed)
                _, start = peers.run_peer(model, name, x, target, run.images, *peers.BB_START)
                adversarial[peers.BB_START] = start
            start_cost = next(r for r in run.results if (r.method, r.budget) == peers.BB_START).cost
        if method not in warmed:
            if method == peers.EXACT:
                peers.run_exact(model, name, x[:2], target[:2], run.images[:2])
            elif method == peers.SHARP:
                peers.run_ours(model, name, x[:2], y[:2], run.images[:2], method=peers.SHARP)
            elif method == peers.FAST:
                peers.run_fast(model, name, x[:2], y[:2], run.images[:2], target[:2], min(budgets[method]))
            elif method in (peers.WALK, peers.WALK_DDN):
                peers.run_own(model, name, x[:2], target[:2], run.images[:2], method, 1, peers.RULE,
                              start=None if start is None else start[:2])
            else:
                peers.run_peer(model, name, x[:2], target[:2], run.images[:2], method, min(budgets[method]),
                               start=None if start is None else start[:2])
            warmed.add(method)
        if method == peers.EXACT:
            result = peers.run_exact(model, name, x, target, run.images)
        elif method == peers.SHARP:
            result, found = peers.run_ours(model, name, x, y, run.images, c_steps=budget, method=peers.SHARP)
            if not torch.equal(found.target.cpu(), target.cpu()):
                raise RuntimeError(f"{name}: ours-sharp chose other runner-up labels than the saved targets")
        elif method == peers.FAST:
            result = peers.run_fast(model, name, x, y, run.images, target, budget)
        elif method in (peers.WALK, peers.WALK_DDN):
            result, _ = peers.run_own(model, name, x, target, run.images, method, budget, peers.RULE, start=start,
                                      start_cost=start_cost)
        else:
            result, x_adv = peers.run_peer(model, name, x, target, run.images, method, budget, start=start,
                                           start_cost=start_cost)
            if (method, budget) == peers.BB_START:
                adversarial[method, budget] = x_adv
        run.results.append(result)
        run.provenance["date"] = peers.started_at()
        peers.save(run, folder)
        bar.update()
    return run


def markdown(frame) -> str:
    """A DataFrame as a Markdown table (floats to 4 significant digits)."""
    cells = [[f"{v:.4g}" if isinstance(v, float) else str(v) for v in row] for row in frame.itertuples(index=False)]
    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in cells])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=100, help="test images per model before keeping the correctly "
                                                                 "classified ones (default 100)")
    parser.add_argument("--conv-images", type=int, default=100,
                        help="the same for Conv (default 100; its attacks run ~10x slower than the MLPs')")
    parser.add_argument("--models", nargs="+", default=list(peers.MODELS), choices=peers.MODELS)
    peers.add_run_arguments(parser)
    args = parser.parse_args()
    folder = peers.results_folder(parser, args, peers.RESULTS_DIR)
    lib.setup_torch(seed=SEED)
    warnings.filterwarnings("ignore", message=".*optimizer needs to be compiled.*")  # BB's numba, warmed up
    warnings.filterwarnings("ignore", category=UserWarning, module="eagerpy")  # tensor copy-construction notices
    budgets = dict(peers.BUDGETS)
    total = sum(len(plan(m, budgets)) for m in args.models)
    start = time.perf_counter()
    runs = []
    with lib.one_thread(), tqdm(total=total, desc="peers", unit="run") as bar:
        for name in args.models:
            runs.append(run_model(name, args.conv_images if name == "Conv" else args.images, budgets, bar,
                                  args.fresh, args.device, folder))
    wall = time.perf_counter() - start
    results = [r for run in runs for r in run.results]
    table = peers.summary(results)
    verdicts = peers.findings(results)
    where = (f"one thread ({peers.environment()['machine']['cpu']})" if args.device == "cpu"
             else torch.cuda.get_device_name())
    text = [f"# Peers: {len(args.models)} models, runner-up targets, {where}; this session {wall / 60:.1f} min",
            "", markdown(table), "", "## Verdicts", ""]
    text += [f"- {f.claim}: {findings.verdict(f)} ({f.ours}; {f.paper})" for f in verdicts]
    summary = "\n".join(text) + "\n"
    print("\n" + summary)
    if set(args.models) == set(peers.MODELS):
        (folder / "summary.md").write_text(summary)
    print(f"total wall time of this session: {wall:.0f} s; sum of timed attack seconds: "
          f"{np.sum([r.seconds for r in results]):.0f} s")


if __name__ == "__main__":
    main()
