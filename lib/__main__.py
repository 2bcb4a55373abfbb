"""Command line: `python -m lib train NAME|all`, `python -m lib table1 [--images all]`, `python -m lib decay-readings`,
`python -m lib word-vectors [--corpus wordnet|text8]`,
`python -m lib adversarial-training [--stage sweep|finals|all]`, `python -m lib imagenet [--stage ...]`,
`python -m lib names`."""
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


def _table1(args: argparse.Namespace) -> None:
    from . import paper
    from .experiments import table1_errors
    from .table1 import assemble_run, check_run, compute_chunks, distortion_table

    if args.images is None:
        print(table1_errors().to_string(index=False))
        return
    images = args.images if args.images == "all" else int(args.images)
    rules = args.rules.split(",")
    names = args.models.split(",") if args.models else list(paper.TABLE1_MODELS)
    for rule in rules:  # every name and rule checked before any work starts
        for name in names:
            check_run(name, rule)
    start = time.perf_counter()
    walls = {}
    for rule in rules:  # first every chunk (resumable), then the assembly, which needs every Table 1 model
        for name in names:
            walls[name, rule] = compute_chunks(name, rule, images, device=args.device, workers=args.workers)
    for rule in rules:
        for name in names:
            run = assemble_run(name, rule, images, device=args.device, workers=args.workers,
                               wall_seconds=walls[name, rule])
            print(f"{name:14s} {rule:10s} {len(run.indices)} images: {run.meta['attack_seconds']:8.1f} s attacking "
                  f"(summed over processes), {run.meta['wall_seconds']:8.1f} s wall this call", flush=True)
    print(f"total {time.perf_counter() - start:.1f} s wall clock")
    print(distortion_table(images).to_string(index=False))


def _decay_readings() -> None:
    from .table1 import choose_reading, decay_readings, load_decay_readings, reading_gaps, save_decay_readings

    save_decay_readings(decay_readings())
    frame = load_decay_readings()
    print(frame[["reading", "model", "train_error", "paper train %", "test_error", "paper test %", "iterations",
                 "converged", "seconds"]].to_string(index=False))
    print("largest training-error gap per reading (pp):", reading_gaps(frame).round(2).to_dict())
    print("closest reading:", choose_reading(frame))


def _word_vectors(args: argparse.Namespace) -> None:
    from . import word_vectors

    extra = {} if args.min_count is None else {"min_count": args.min_count}
    meta = word_vectors.build(args.corpus, seed=args.seed, folder=args.out or word_vectors.FOLDER, **extra)
    print(f"{meta['words_kept']} words in both halves ({meta['vocabulary']} per half), trained in "
          f"{meta['train_seconds']} s; written to {args.out or word_vectors.FOLDER}")


def _adversarial_training(args: argparse.Namespace) -> None:
    from . import adversarial_sweep as sweep

    stages = ("sweep", "finals") if args.stage == "all" else (args.stage,)
    start = time.perf_counter()
    if "sweep" in stages:
        first = sweep.execute(sweep.sweep_runs(), workers=args.workers)
        records = sweep.execute(sweep.sweep_runs(first), workers=args.workers)  # the second stage
        for rec in sorted(records, key=lambda r: (r.run.method, r.validation_error)):
            print(f"{rec.run.method:17s} {rec.run.setting():70s} validation {rec.validation_error:5.2f}%  "
                  f"{rec.seconds:6.1f} s", flush=True)
    if "finals" in stages:
        records = sweep.execute(sweep.final_runs(sweep.sweep_records()), workers=args.workers)
        print(sweep.summary(records).to_string(index=False))
    print(f"total {time.perf_counter() - start:.1f} s wall clock")


def _imagenet(args: argparse.Namespace) -> None:
    from tqdm import tqdm

    from . import imagenet, natural_images, quantise, setup_torch

    setup_torch()  # one thread, fixed seed: the same tables on every run
    networks = args.networks.split(",") if args.networks else list(imagenet.LITE_NAMES)
    for name in networks:
        if name not in imagenet.LITE_NAMES:
            raise ValueError(f"--networks takes EfficientNet-Lite names {imagenet.LITE_NAMES}, got {name!r}")
    stages = ("attacks", "grid", "evaluate", "bounds") if args.stage == "all" else (args.stage,)
    start = time.perf_counter()
    if "attacks" in stages:
        used = natural_images.used_photos(natural_images.top1_table())
        print(f"photos top-1 correct for all three networks: {', '.join(used)}", flush=True)
        todo = [(n, rule) for n in networks for rule in natural_images.RULES
                if args.fresh or not natural_images.attacks_are_current(n, rule, used)]
        print(f"{len(todo)} of {len(networks) * len(natural_images.RULES)} attack runs to do "
              f"(the others are committed and current)", flush=True)
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=max(1, args.workers), mp_context=context) as pool:
            jobs = [pool.submit(natural_images.attack_and_save, n, rule, used, args.device) for n, rule in todo]
            for job in tqdm(as_completed(jobs), total=len(jobs), desc="attack runs", mininterval=5):
                tqdm.write(job.result())
    if "grid" in stages:
        for n in networks:
            for rule in natural_images.RULES:
                run = natural_images.load_attacks(n, rule)
                if args.fresh or run.meta.get("grid_version") != quantise.VERSION:
                    run = natural_images.add_grid(run)
                    natural_images.save_attacks(run)
                    print(f"{n} {rule}: 8-bit {int(run.success_8bit.sum())}/{len(run.photos)}, distortion "
                          f"{run.distortion_8bit.mean():.5f} ({run.distortion_8bit.mean() / run.distortion.mean():.2f}x "
                          f"the float one), {run.meta['grid_seconds']:.0f} s", flush=True)
    if "evaluate" in stages:
        result = natural_images.evaluate()
        print(f"evaluation: {len(result['survival'])} survival rows, {len(result['transfer'])} transfer rows, "
              f"{result['seconds']:.0f} s", flush=True)
    if "bounds" in stages:
        from . import imagenet_bounds

        table, provenance = imagenet_bounds.load_table(imagenet_bounds.write_lite_table("efficientnet-lite0"))
        print(f"Table 5 on efficientnet-lite0: {len(table)} rows, global bound {imagenet_bounds.global_bound(table):.4g}, "
              f"{provenance['seconds']:.0f} s")
    print(f"total {time.perf_counter() - start:.1f} s wall clock")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lib", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="retrain zoo models from scratch and save them")
    train.add_argument("names", nargs="+", help=f"'all' or any of: {', '.join(zoo.NAMES)}")
    train.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1),
                       help="parallel training processes (default: up to 2)")
    table1 = sub.add_parser("table1", help="Table 1's error columns, ours beside the paper's; with --images, its "
                                           "distortion column (resumable, results in data/results/table1/)")
    table1.add_argument("--images", help="'all' (60,000 training images) or a number (a seeded subset)")
    table1.add_argument("--rules", default="runner-up,random", help="comma-separated target rules: runner-up, "
                                                                    "random, every (all nine wrong labels), every-fast "
                                                                    "(the same with the fast attack)")
    table1.add_argument("--models", help="comma-separated Table 1 models (default: all six)")
    table1.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    table1.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1),
                        help="CPU processes of one thread each (default: up to 2)")
    sub.add_parser("decay-readings", help="fit Table 1's softmax models under each reading of the paper's decay "
                                          "and write data/results/decay_readings.json (about 15 min on one core)")
    words = sub.add_parser("word-vectors", help="train word2vec on two disjoint halves of a corpus and write "
                                                "data/words/ (WordNet glosses: offline, about 2 minutes on one core)")
    words.add_argument("--corpus", default="wordnet", choices=["wordnet", "text8"],
                       help="wordnet: WordNet 3.0's glosses from Debian's wordnet-base (offline); text8: via "
                            "gensim.downloader (needs the network)")
    words.add_argument("--seed", type=int, default=0, help="seed of the split and of word2vec (default 0)")
    words.add_argument("--min-count", type=int, help="drop words rarer than this in a half (default 10)")
    words.add_argument("--out", help="output folder (default data/words)")
    adversarial = sub.add_parser("adversarial-training", help="chapter 4's sweep on the validation split, then the "
                                 "chosen settings' finals with 3 seeds (resumable; data/results/adversarial_training/)")
    adversarial.add_argument("--stage", default="all", choices=["sweep", "finals", "all"],
                             help="sweep: every setting on 50,000 images, scored on the last 10,000; finals: the "
                                  "chosen ones on all 60,000 with 3 seeds, tested once (default: all)")
    adversarial.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1),
                             help="parallel training processes of one thread each (default: up to 2)")
    images = sub.add_parser("imagenet", help="the natural-images chapter: the paper's attack on the bundled photos for "
                            "EfficientNet-Lite0/1/2, what the examples survive, Table 5 on lite0 (data/results/imagenet/)")
    images.add_argument("--stage", default="all", choices=["attacks", "grid", "evaluate", "bounds", "all"],
                        help="attacks: resumable, one run per network and target rule; grid: the 8-bit examples "
                             "of the committed runs again (where quantise.VERSION changed); evaluate: 8-bit, PNG and "
                             "JPEG survival, transfer and noise; bounds: Table 5 on lite0 (default: all)")
    images.add_argument("--networks", help="comma-separated EfficientNet-Lite names (default: all three)")
    images.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    images.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1),
                        help="attack runs in parallel, one thread each (default: up to 2)")
    images.add_argument("--fresh", action="store_true", help="redo the committed attack runs")
    sub.add_parser("names", help="list the zoo's model names")
    args = parser.parse_args(argv)
    try:
        if args.command == "train":
            _train(args.names, max(1, args.workers))
        elif args.command == "table1":
            _table1(args)
        elif args.command == "decay-readings":
            _decay_readings()
        elif args.command == "adversarial-training":
            _adversarial_training(args)
        elif args.command == "imagenet":
            _imagenet(args)
        elif args.command == "word-vectors":
            _word_vectors(args)
        else:
            print("\n".join(zoo.NAMES))
    except (KeyError, ValueError, FileNotFoundError, RuntimeError) as err:
        print(f"error: {err.args[0]}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
