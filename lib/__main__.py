"""Command line: `python -m lib train NAME|all`, `python -m lib table1`, `python -m lib names`."""
from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed

from . import zoo


def _train(names: list[str], workers: int) -> None:
    chosen = list(zoo.NAMES) if names == ["all"] else names
    for name in chosen:
        zoo.spec(name)  # fail on an unknown name before any training starts
    start = time.perf_counter()
    print(f"training {len(chosen)} model(s) from scratch in {workers} process(es), one thread each", flush=True)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        longest_first = sorted(chosen, key=lambda n: ({"conv": 0, "autoencoder": 1, "mlp": 2}.get(zoo.spec(n).arch, 3),
                                                      -sum(zoo.spec(n).hidden), zoo.spec(n).train_on))
        jobs = [pool.submit(zoo.retrain, name) for name in longest_first]
        for job in as_completed(jobs):
            rec = job.result()
            print(f"{rec['name']:18s} train {rec['train_error']:6.2f}%  test {rec['test_error']:6.2f}%  "
                  f"P1 {rec['P1_error']:6.2f}%  P2 {rec['P2_error']:6.2f}%  {rec['train_seconds']:7.1f} s",
                  flush=True)
    print(f"total {time.perf_counter() - start:.1f} s wall clock for {len(chosen)} model(s)")


def _table1() -> None:
    from .experiments import table1_errors

    print(table1_errors().to_string(index=False))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lib", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="retrain zoo models from scratch and save them")
    train.add_argument("names", nargs="+", help=f"'all' or any of: {', '.join(zoo.NAMES)}")
    train.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1),
                       help="parallel training processes (default: up to 2)")
    sub.add_parser("table1", help="Table 1's error columns, ours beside the paper's")
    sub.add_parser("names", help="list the zoo's model names")
    args = parser.parse_args(argv)
    try:
        if args.command == "train":
            _train(args.names, max(1, args.workers))
        elif args.command == "table1":
            _table1()
        else:
            print("\n".join(zoo.NAMES))
    except KeyError as err:
        print(f"error: {err.args[0]}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
