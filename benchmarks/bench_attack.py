"""Benchmark the Section 4.1 attack: batched torch L-BFGS vs the per-image scipy reference, and the
linear-model optimality gap against the exact QP minimum.

    python benchmarks/bench_attack.py [--n 100] [--threads 1] [--repeats 3]

Uses the zoo's N100-100-10 and softmax-1e-4 (committed weights).
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from pathlib import Path

# Before numpy loads: its OpenBLAS threads would otherwise spin against torch's on a small machine
# and slow the per-image scipy reference ~5x (lib.one_thread limits them itself only with threadpoolctl).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import torch  # noqa: E402
from torch import nn  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import lib  # noqa: E402
from lib import attack, attack_reference  # noqa: E402
from lib.data import fixed_subset  # noqa: E402


def load_model(name: str) -> tuple[nn.Module, str]:
    """The zoo model (committed weights; trains it first if they are missing), with where it came from."""
    from lib import zoo

    return zoo.load(name, progress=False), f"zoo.load({name!r})"


def runner_up(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The label with the second-highest logit: a valid target for every image."""
    with torch.no_grad():
        logits = model(x)
    return logits.scatter(1, logits.argmax(1, keepdim=True), -torch.inf).argmax(1)


def timed(fn, *args, **kwargs):
    """(result, wall seconds)."""
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start


def batched_vs_reference(n: int, repeats: int) -> None:
    model, source = load_model("N100-100-10")
    x, _ = fixed_subset(n, train=False, seed=0)
    target = runner_up(model, x)
    print(f"\n## Batched vs reference: {n} MNIST test images, runner-up targets, model {source}\n")
    # Warm-up on the same batch: the first call pays for the allocator growing its heap (~40% here).
    attack.lbfgs_attack(model, x, target, c_steps=2)
    attack_reference.lbfgs_attack_reference(model, x[:3], target[:3], c_steps=2)
    runs = [timed(attack.lbfgs_attack, model, x, target) for _ in range(repeats)]
    batched, t_batched = sorted(runs, key=lambda run: run[1])[len(runs) // 2]  # the median run
    reference, t_reference = timed(attack_reference.lbfgs_attack_reference, model, x, target)
    print(f"batched: median of {repeats} runs ({', '.join(f'{t:.2f}' for _, t in runs)} s); "
          f"reference: one run ({n} separate per-image searches)\n")
    print("| method | time (s) | ms / image | mean distortion | success |")
    print("|---|---|---|---|---|")
    for name, result, seconds in [("batched torch L-BFGS (lbfgs_attack)", batched, t_batched),
                                  ("scipy L-BFGS-B per image (reference)", reference, t_reference)]:
        print(f"| {name} | {seconds:.2f} | {1000 * seconds / n:.1f} | {result.distortion.mean():.5f} "
              f"| {result.success.float().mean():.0%} |")
    ratio = batched.distortion / reference.distortion
    print(f"\ntime ratio (reference / batched): {t_reference / t_batched:.1f}x")
    print(f"mean-distortion ratio (batched / reference): {batched.distortion.mean() / reference.distortion.mean():.4f}"
          f"; per image {ratio.min():.4f} .. {ratio.max():.4f}")


def linear_gap(n: int) -> None:
    model, source = load_model("softmax-1e-4")
    x, y = fixed_subset(n, train=False, seed=0)
    correct = attack.predict(model, x) == y
    x, y = x[correct], y[correct]
    print(f"\n## Linear model vs the exact QP minimum: {len(x)} correctly classified test images "
          f"(of {n}), model {source}\n")
    (exact_all, t_exact) = timed(lambda: [attack_reference.exact_min_distortion_linear(model, x, torch.full_like(y, j))
                                          for j in range(10)])
    exact = torch.stack([e.distortion for e in exact_all], 1)
    exact[torch.arange(len(y)), y] = torch.inf
    exact_min, exact_target = exact.min(1)
    target = runner_up(model, x)
    exact_runner_up = exact[torch.arange(len(y)), target]
    print(f"exact QPs: {10 * len(x)} in {t_exact:.1f} s\n")
    print("| attack | time (s) | success | mean distortion | mean / exact | max / exact |")
    print("|---|---|---|---|---|---|")
    rows = [
        ("per-target (runner-up), refine=False", lambda: attack.lbfgs_attack(model, x, target, refine=False),
         exact_runner_up),
        ("per-target (runner-up)", lambda: attack.lbfgs_attack(model, x, target), exact_runner_up),
        ("per-target (y+1 mod 10), refine=False", lambda: attack.lbfgs_attack(model, x, (y + 1) % 10, refine=False),
         exact[torch.arange(len(y)), (y + 1) % 10]),
        ("per-target (y+1 mod 10)", lambda: attack.lbfgs_attack(model, x, (y + 1) % 10),
         exact[torch.arange(len(y)), (y + 1) % 10]),
        ("min_distortion, best of 9 targets", lambda: attack.min_distortion(model, x, y, target="best"), exact_min),
    ]
    for name, run, reference in rows:
        result, seconds = timed(run)
        ratio = result.distortion / reference
        print(f"| {name} | {seconds:.2f} | {result.success.float().mean():.0%} | {result.distortion.mean():.5f} "
              f"| {ratio.mean():.4f} | {ratio.max():.4f} |")
        if name.startswith("min_distortion"):
            same = (result.target == exact_target).float().mean()
            print(f"\n(min_distortion picked the exact minimiser's target for {same:.0%} of the images)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100, help="test images (default 100)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads for the batched attack (default 1: the tensors are small, and on a "
                             "shared 2-core machine a second OpenMP thread costs far more than it saves)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="timed runs of the batched attack; the median is reported (default 3)")
    args = parser.parse_args()
    lib.setup_torch(seed=0)  # flushed denormals, glibc keeping freed memory (see lib.keep_freed_memory)
    torch.set_num_threads(args.threads)
    print(f"# bench_attack: torch {torch.__version__}, {torch.get_num_threads()} torch thread(s), "
          f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')}, "
          f"threadpoolctl {'present' if importlib.util.find_spec('threadpoolctl') else 'absent'}")
    batched_vs_reference(args.n, args.repeats)
    linear_gap(args.n)


if __name__ == "__main__":
    main()
