"""Table 1 the paper's way: which reading of its weight decay fits, and its distortion column on all 60,000 images.

Two heavy computations run once through the CLI (`python -m lib decay-readings`,
`python -m lib table1 --images all`); their compact results are committed in `data/results/` with
their provenance, and the book reads them.
"""
from __future__ import annotations

import functools
import io
import json
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from . import DATA_DIR, attack, fast_attack, one_thread, paper, setup_torch, zoo
from .data import CACHE_DIR, atomic_write_bytes, load_mnist, subset_indices
from .findings import DISTORTION_FACTOR, ERROR_PP, SUBSET_ERROR_PP, Finding, within_factor
from .models import DECAY_READINGS, softmax_classifier, weight_decay_penalty
from .train import LBFGS_CHANGE_TOL, LBFGS_GRAD_TOL, classification_loss, error_rate, fit_lbfgs

RESULTS_DIR = DATA_DIR / "results"
SOFTMAX_MODELS = ("softmax-1e-4", "softmax-1e-2", "softmax-1")
SOFTMAX_LAMBDAS = (1e-4, 1e-2, 1.0)
SUMMED = "summed loss"  # the reading with the loss summed (not averaged) over the 60,000 images, k = outputs
READINGS = ("half", "outputs", "none", "inputs", SUMMED)  # every models.DECAY_READINGS, plus the summed loss


@dataclass(frozen=True)
class ReadingFit:
    """One softmax model fitted the paper's way under one reading of its decay."""

    reading: str
    model: str
    lam: float
    train_error: float
    test_error: float
    iterations: int
    converged: bool
    seconds: float


def fit_reading(reading: str, lam: float, max_iter: int = 500, seed: int = 0) -> tuple[torch.nn.Module, dict]:
    """A softmax trained by full-batch float64 L-BFGS until convergence with decay lambda read as `reading`."""
    if reading not in READINGS:
        raise ValueError(f"unknown reading {reading!r}; valid: {', '.join(READINGS)}")
    images, labels = load_mnist(train=True)
    if reading == SUMMED:  # sum of losses + lambda/k |w|^2 has the minimiser of mean loss + lambda/(k N) |w|^2
        per, scale = "outputs", 1 / len(images)
    else:
        per, scale = reading, 1.0
    torch.manual_seed(seed)
    model = softmax_classifier()
    log = fit_lbfgs(model, images, labels, classification_loss(lambda m: weight_decay_penalty(m, (lam * scale,), per)),
                    max_iter=max_iter, progress=False)
    return model, log[-1]


def decay_readings(readings: tuple[str, ...] = READINGS, max_iter: int = 500, progress: bool = True) -> list[ReadingFit]:
    """Fit the three Table 1 softmax models under every reading (minutes: run through the CLI; resumable).

    Each finished fit is kept in data/cache/decay-readings/, so an interrupted run picks up where it
    stopped. A weak decay (the summed loss, k = inputs) converges slowly: `max_iter` caps those fits, and
    each fit records whether it converged.
    """
    test_x, test_y = load_mnist(train=False)
    train_x, train_y = load_mnist(train=True)
    fits = []
    jobs = [(r, name, lam) for r in readings for name, lam in zip(SOFTMAX_MODELS, SOFTMAX_LAMBDAS)]
    with one_thread():
        for reading, name, lam in tqdm(jobs, desc="decay readings", disable=not progress):
            done = CACHE_DIR / "decay-readings" / f"{reading.replace(' ', '_')}-{lam:g}-{max_iter}.json"
            if done.exists():
                fits.append(ReadingFit(**json.loads(done.read_text())))
                continue
            start = time.perf_counter()
            model, last = fit_reading(reading, lam, max_iter=max_iter)
            fit = ReadingFit(reading, name, lam, round(error_rate(model, train_x, train_y), 2),
                             round(error_rate(model, test_x, test_y), 2), last["iteration"], last["converged"],
                             round(time.perf_counter() - start, 1))
            atomic_write_bytes(done, json.dumps(fit.__dict__).encode())
            fits.append(fit)
    return fits


def save_decay_readings(fits: list[ReadingFit]) -> None:
    """Write the fits with their provenance to data/results/decay_readings.json (atomically)."""
    record = {"what": "Table 1's softmax models under each reading of the paper's weight decay",
              "recipe": f"full-batch L-BFGS (strong Wolfe, float64) until max|grad| <= {LBFGS_GRAD_TOL} or a change "
                        f"< {LBFGS_CHANGE_TOL}, at most {max(f.iterations for f in fits)} iterations; seed 0",
              "command": "python -m lib decay-readings", "torch": torch.__version__,
              "readings": {**DECAY_READINGS, SUMMED: "loss summed over the 60,000 images + lambda/k sum w^2, "
                                                     "k = output units"},
              "fits": [f.__dict__ for f in fits]}
    atomic_write_bytes(RESULTS_DIR / "decay_readings.json", (json.dumps(record, indent=1) + "\n").encode())


def load_decay_readings() -> pd.DataFrame:
    """The committed fits as a table: reading, model, our train/test error beside the paper's."""
    path = RESULTS_DIR / "decay_readings.json"
    if not path.exists():
        raise FileNotFoundError(f"no decay readings at {path}; run `python -m lib decay-readings`")
    record = json.loads(path.read_text())
    frame = pd.DataFrame(record["fits"])
    frame["paper train %"] = [paper.TABLE1[m]["train_error"] for m in frame["model"]]
    frame["paper test %"] = [paper.TABLE1[m]["test_error"] for m in frame["model"]]
    frame["description"] = [record["readings"][r] for r in frame["reading"]]
    return frame


def reading_gaps(frame: pd.DataFrame) -> pd.Series:
    """Per reading, the largest |our training error - the paper's| over the three softmax models (pp)."""
    gap = (frame["train_error"] - frame["paper train %"]).abs()
    return gap.groupby(frame["reading"]).max().sort_values()


def choose_reading(frame: pd.DataFrame) -> str:
    """The reading whose softmax training errors come closest to Table 1's (smallest largest gap).

    Training errors only: the choice never looks at the test set.
    """
    return str(reading_gaps(frame).index[0])


# ----------------------------------------------------------------------------------------------
# The distortion column on the whole training set
# ----------------------------------------------------------------------------------------------

# "every": all nine wrong labels with the paper's attack; "every-fast": the same with `fast_attack.fast_attack`
# (both give "best" and the mean of nine). Nine paper attacks per image take hours on the whole set, so the
# paper's attack covers a seeded subset, which checks the fast one (`fast_check`), and the fast one the whole set.
RUN_RULES = ("runner-up", "random", "every", "every-fast")
NINE_LABEL_RULES = ("every", "every-fast")
CHUNK = 500  # images per resumable piece of work
EVERY_IMAGES = 500  # the seeded subset the paper's attack attacks towards all nine wrong labels
# every-fast: fast_attack's settings towards all nine labels (its defaults suit the nearest; far labels need a
# larger c and a sharper loss), chosen by benchmarks/bench_nine_label_fast.py on training images outside the subset
NINE_LABEL_FAST = {"c_factor": 16.0, "temperature": 0.003, "polish_steps": 50}


@dataclass
class DistortionRun:
    """One model's training images attacked under one target rule: the compact per-image result the book reads."""

    model: str
    rule: str
    indices: torch.Tensor  # [N] int32: training-set indices
    distortion: torch.Tensor  # [N] float16 ([N,9] for "every"): sqrt(sum r^2 / 784); 0 for misclassified images
    target: torch.Tensor  # [N] uint8 ([N,9]): the label attacked
    success: torch.Tensor  # [N] bool ([N,9])
    misclassified: torch.Tensor  # [N] bool: the model already gets the image wrong (not attacked)
    predictions: torch.Tensor  # [N,6] uint8: each Table 1 model's label for x_adv (Table 2); [N,0] for "every"
    meta: dict  # provenance: weights fingerprint, attack VERSION, seed, chunk, device, seconds, torch


def run_indices(images: int | str, seed: int = 0) -> torch.Tensor:
    """The training-set indices of a run: all 60,000 ("all") or a seeded subset of `images`."""
    if images == "all":
        return torch.arange(60_000)
    return subset_indices(int(images), train=True, seed=seed)


def run_path(name: str, rule: str, images: int | str):
    """Where the committed result of a run lives."""
    return RESULTS_DIR / "table1" / f"{name}.{rule}.{images}.pt"


def check_run(name: str, rule: str) -> None:
    """ValueError unless `name` is a Table 1 model and `rule` one of RUN_RULES."""
    if name not in paper.TABLE1:
        raise ValueError(f"unknown Table 1 model {name!r}; valid: {', '.join(paper.TABLE1_MODELS)}")
    if rule not in RUN_RULES:
        raise ValueError(f"unknown rule {rule!r}; valid: {', '.join(RUN_RULES)}")


_MODELS: dict[tuple[str, str], torch.nn.Module] = {}  # per process: the loaded Table 1 models, by (name, device)


def _model(name: str, device: str) -> torch.nn.Module:
    if (name, device) not in _MODELS:
        _MODELS[name, device] = zoo.load(name, progress=False).to(device)
    return _MODELS[name, device]


def attack_chunk(name: str, rule: str, indices: torch.Tensor, seed: int, device: str = "cpu") -> dict:
    """Attack the training images `indices` on model `name` under `rule` (the random draw seeded by seed + first index)."""
    images, labels = load_mnist(train=True)
    x, y = images[indices].to(device), labels[indices].to(device)
    model = _model(name, device)
    start = time.perf_counter()
    if rule in NINE_LABEL_RULES:
        method = functools.partial(fast_attack.fast_attack, **NINE_LABEL_FAST) if rule == "every-fast" else None
        rows = attack.every_target(model, x, y, method=method)
        shape = (len(x), -1)
    else:
        rows = attack.min_distortion(model, x, y, target=rule, seed=seed + int(indices[0]))
        shape = (len(x),)
    part = {"distortion": rows.distortion.view(shape).cpu(), "target": rows.target.view(shape).cpu().to(torch.uint8),
            "success": rows.success.view(shape).cpu(), "misclassified": rows.misclassified.view(shape).cpu(),
            "seconds": time.perf_counter() - start}
    if rule in NINE_LABEL_RULES:
        part["misclassified"] = part["misclassified"][:, 0]
    else:  # kept in the (uncommitted) chunk file, for Table 2's predictions once every model is trained
        part["x_adv"] = rows.x_adv.cpu()
    return part


def _chunk_job(name: str, rule: str, indices: torch.Tensor, seed: int, device: str, path) -> float:
    """Worker: attack one chunk (one thread) and save it atomically; returns its seconds."""
    setup_torch(seed)
    part = attack_chunk(name, rule, indices, seed, device)
    buffer = io.BytesIO()
    torch.save(part, buffer)
    atomic_write_bytes(path, buffer.getvalue())
    return part["seconds"]


def _chunk_paths(name: str, rule: str, images: int | str, seed: int, chunk: int):
    """The run's indices and its chunks (first index, indices, file), keyed by weights fingerprint and attack VERSION."""
    indices = run_indices(images, seed)
    version = f"v{attack.VERSION}" + (f"-fast{fast_attack.VERSION}-{_fast_settings()}" if rule == "every-fast" else "")
    work = CACHE_DIR / "table1-chunks" / f"{name}.{rule}.{images}-{zoo.fingerprint(name)}-{version}-s{seed}-c{chunk}"
    return indices, [(i, indices[i : i + chunk], work / f"{i:06d}.pt") for i in range(0, len(indices), chunk)]


def _fast_settings() -> str:
    return "-".join(f"{k}{v:g}" for k, v in NINE_LABEL_FAST.items())


def compute_chunks(name: str, rule: str, images: int | str = "all", *, seed: int = 0, device: str | None = None,
                   workers: int = 1, chunk: int = CHUNK, progress: bool = True) -> float:
    """Attack the run's images chunk by chunk (finished chunks on disk are skipped); returns the wall seconds.

    On CUDA (the default when available) one process works through the chunks; on the CPU `workers`
    processes of one thread each. Chunks live in data/cache/table1-chunks/, keyed by the model's weights
    fingerprint and the attack VERSION, so a retrained model or a changed attack never reuses them.
    """
    check_run(name, rule)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    indices, pieces = _chunk_paths(name, rule, images, seed, chunk)
    todo = [p for p in pieces if not p[2].exists()]
    start = time.perf_counter()
    bar = tqdm(total=len(pieces), initial=len(pieces) - len(todo), desc=f"{name} {rule} ({len(indices)} images)",
               disable=not progress)
    if device != "cpu" or workers <= 1:
        for _, idx, path in todo:
            _chunk_job(name, rule, idx, seed, device, path)
            bar.update()
    elif todo:
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            for job in as_completed([pool.submit(_chunk_job, name, rule, idx, seed, device, path)
                                     for _, idx, path in todo]):
                job.result()
                bar.update()
    bar.close()
    return time.perf_counter() - start


def assemble_run(name: str, rule: str, images: int | str = "all", *, seed: int = 0, device: str | None = None,
                 workers: int = 1, chunk: int = CHUNK, wall_seconds: float | None = None) -> DistortionRun:
    """Join a run's finished chunks, add every Table 1 model's prediction on its examples, and save it."""
    check_run(name, rule)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    indices, pieces = _chunk_paths(name, rule, images, seed, chunk)
    missing = [str(path) for _, _, path in pieces if not path.exists()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} chunks of {name} {rule} are not computed yet, e.g. {missing[0]}")
    parts = [torch.load(path, weights_only=True) for _, _, path in pieces]
    cat = {k: torch.cat([p[k] for p in parts]) for k in ("distortion", "target", "success", "misclassified")}
    if rule in NINE_LABEL_RULES:
        predictions = torch.zeros(len(indices), 0, dtype=torch.uint8)
    else:
        with torch.no_grad(), one_thread():
            predictions = torch.stack([torch.cat([_model(m, "cpu")(p["x_adv"]).argmax(1) for p in parts])
                                       for m in paper.TABLE1_MODELS], 1).to(torch.uint8)
    meta = {"model": name, "rule": rule, "images": images, "seed": seed, "chunk": chunk,
            "weights": zoo.fingerprint(name), "attack_version": attack.VERSION, "device": device, "workers": workers,
            **({"fast_attack_version": fast_attack.VERSION, "fast_attack_settings": NINE_LABEL_FAST}
               if rule == "every-fast" else {}),
            "torch": torch.__version__, "attack_seconds": round(sum(p["seconds"] for p in parts), 1),
            "wall_seconds": None if wall_seconds is None else round(wall_seconds, 1),
            "command": f"python -m lib table1 --images {images} --rules {rule} --models {name}",
            "random_rule": "each chunk's draw seeded by seed + its first index"}
    run = DistortionRun(name, rule, indices.to(torch.int32), cat["distortion"].to(torch.float16), cat["target"],
                        cat["success"], cat["misclassified"], predictions, meta)
    save_run(run)
    return run


def save_run(run: DistortionRun) -> None:
    """Write a run to data/results/table1/ atomically."""
    buffer = io.BytesIO()
    torch.save({**{k: v for k, v in run.__dict__.items() if k != "meta"}, "meta": json.dumps(run.meta)}, buffer)
    atomic_write_bytes(run_path(run.model, run.rule, run.meta["images"]), buffer.getvalue())


def load_run(name: str, rule: str, images: int | str = "all") -> DistortionRun:
    """A committed run; FileNotFoundError naming the command that computes it."""
    check_run(name, rule)
    path = run_path(name, rule, images)
    if not path.exists():
        raise FileNotFoundError(f"no committed run at {path}; compute it with "
                                f"`python -m lib table1 --images {images} --rules {rule} --models {name}`")
    stored = torch.load(path, weights_only=True)
    return DistortionRun(**{**stored, "meta": json.loads(stored["meta"])})


STATISTICS = {"runner-up": ("runner-up", "the highest-scoring wrong label"),
              "random": ("random", "one wrong label drawn uniformly (seeded)"),
              "best": ("every", "the closest of the nine wrong labels"),
              "mean of nine": ("every", "the mean over the nine wrong labels")}
NINE_LABEL_STATISTICS = ("best", "mean of nine")  # read from a nine-label run: "every" or "every-fast"


def run_distortions(run: DistortionRun, statistic: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image (distortion as float32, success) under a statistic of STATISTICS, from a run of its rule."""
    d, ok = run.distortion.float(), run.success
    if statistic in ("runner-up", "random"):
        return d, ok
    if statistic == "best":
        return torch.where(ok, d, torch.inf).min(1).values, ok.any(1)
    if statistic == "mean of nine":
        return d.mean(1), ok.all(1)
    raise ValueError(f"unknown statistic {statistic!r}; valid: {', '.join(STATISTICS)}")


# How one number summarises a model's per-image distortions. The paper says "average minimum distortion"
# and calls the same numbers "stddev" (Table 4, Figure 7): the standard deviation of the perturbation's
# pixels, pooled over the perturbed images, is sqrt(mean over images of d^2), not the mean of d.
AGGREGATES = {"mean": "mean over all images, misclassified ones as 0 (the literal '0% accuracy' reading)",
              "mean (correct only)": "mean over the images the model classifies correctly",
              "pooled stddev": "sqrt(mean d^2) over the correctly classified images: the stddev of all "
                               "perturbation pixels together"}


def _aggregates(d: torch.Tensor, ok: torch.Tensor, misclassified: torch.Tensor) -> dict[str, float]:
    """Each AGGREGATES summary of per-image distortions d (summed in float64) with success ok."""
    d = d.double()
    correct = ~misclassified
    attacked = correct & ok
    return {"mean": d.where(correct, 0)[~correct | ok].mean().item(),
            "mean (correct only)": d[attacked].mean().item(),
            "pooled stddev": d[attacked].pow(2).mean().sqrt().item()}


FAST_CHECK_FACTOR = 1.005  # the fast attack stands in for the paper's when every aggregate is within this factor


def fast_check(names: tuple[str, ...] = paper.TABLE1_MODELS) -> pd.DataFrame:
    """The fast attack against the paper's on the EVERY_IMAGES subset: per model and nine-label statistic, the ratios.

    Both attack the same images towards all nine wrong labels ("every-fast" on all 60,000, restricted to
    the subset, against "every"). Columns: the per-label median and 90th percentile of fast / paper
    (rows both attacks reached), and per aggregate the ratio of the two summaries.
    """
    rows = []
    for name in names:
        paper_run, fast_run = load_run(name, "every", EVERY_IMAGES), load_run(name, "every-fast", "all")
        at = paper_run.indices.long()
        if not torch.equal(fast_run.indices.long()[at], at):
            raise ValueError(f"{name}: the every-fast run does not hold the subset's images at their indices")
        fast = DistortionRun(name, "every-fast", paper_run.indices, fast_run.distortion[at], fast_run.target[at],
                             fast_run.success[at], fast_run.misclassified[at], fast_run.predictions[at], fast_run.meta)
        both = paper_run.success & fast.success & ~paper_run.misclassified[:, None]
        label_ratio = fast.distortion.double()[both] / paper_run.distortion.double()[both]
        for statistic in NINE_LABEL_STATISTICS:
            ours = _aggregates(*run_distortions(fast, statistic), fast.misclassified)
            theirs = _aggregates(*run_distortions(paper_run, statistic), paper_run.misclassified)
            rows.append({"model": name, "statistic": statistic, "images": len(at),
                         "per label: median fast / paper": round(label_ratio.median().item(), 4),
                         "per label: 90th percentile": round(label_ratio.quantile(0.9).item(), 4),
                         **{f"ratio {k}": round(ours[k] / theirs[k], 4) for k in AGGREGATES}})
    return pd.DataFrame(rows)


def settings_key(c_factor: float, temperature: float, polish_steps: int) -> str:
    """How benchmarks/bench_nine_label_fast.py names one setting of fast_attack in its record."""
    return f"c{c_factor:g} T{temperature:g} steps{polish_steps}"


def nine_label_fast_choice() -> pd.DataFrame:
    """The committed choice of NINE_LABEL_FAST (benchmarks/bench_nine_label_fast.py): per model, the ratio of the
    fast attack's mean distortion over nine labels to the paper's attack's, under its defaults and the choice.

    ValueError if NINE_LABEL_FAST is not the committed choice.
    """
    record = json.loads((RESULTS_DIR / "table1" / "nine_label_fast.json").read_text())
    if record["chosen"] != NINE_LABEL_FAST:
        raise ValueError(f"table1.NINE_LABEL_FAST {NINE_LABEL_FAST} is not the benchmark's choice {record['chosen']}; "
                         "rerun benchmarks/bench_nine_label_fast.py or set it")
    settings = {"fast_attack's defaults": settings_key(2.0, fast_attack.TEMPERATURE, fast_attack.POLISH_STEPS),
                "NINE_LABEL_FAST": settings_key(**NINE_LABEL_FAST)}
    frame = pd.DataFrame({label: {m: record["ratios"][m][k] for m in record["ratios"]} for label, k in settings.items()})
    frame.loc["worst"] = frame.max()
    return frame.round(4).rename_axis(f"{record['provenance']['images']} validation images: fast / paper")


def nine_label_sources(check: pd.DataFrame | None = None) -> dict[str, tuple[str, int | str]]:
    """Per nine-label statistic, the run it is read from: the fast attack's whole set where `fast_check` passes.

    A statistic moves to the whole set only when, for every model and aggregate, the fast attack's summary
    is within FAST_CHECK_FACTOR of the paper's attack's on the subset; otherwise it stays on the subset.
    Without committed every-fast runs (check None and none on disk), every statistic stays on the subset.
    Once the paper's attack itself has covered all 60,000 images for every model ("every" on "all"),
    both statistics are read from it.
    """
    if all(run_path(m, "every", "all").exists() for m in paper.TABLE1_MODELS):
        return {s: ("every", "all") for s in NINE_LABEL_STATISTICS}
    if check is None:
        try:
            check = fast_check()
        except FileNotFoundError:
            return {s: ("every", EVERY_IMAGES) for s in NINE_LABEL_STATISTICS}
    sources = {}
    for statistic in NINE_LABEL_STATISTICS:
        ratios = check.loc[check["statistic"] == statistic, [f"ratio {k}" for k in AGGREGATES]].to_numpy()
        faithful = ratios.size > 0 and bool((abs(np.log(ratios)) <= np.log(FAST_CHECK_FACTOR)).all())
        sources[statistic] = ("every-fast", "all") if faithful else ("every", EVERY_IMAGES)
    return sources


def distortion_table(images: int | str = "all", statistics: tuple[str, ...] = tuple(STATISTICS),
                     sources: dict[str, tuple[str, int | str]] | None = None) -> pd.DataFrame:
    """Table 1's last column under each target statistic and each aggregate (AGGREGATES), beside the paper's.

    Misclassified images are counted; failed attacks enter no aggregate. The nine-target statistics are
    read from the run `sources` names ({statistic: (rule, images)}, default `nine_label_sources()`); the
    column "attack" says whose. One ratio column per aggregate: "ratio <aggregate>".
    """
    sources = nine_label_sources() if sources is None else sources
    rows = []
    for name in paper.TABLE1_MODELS:
        for statistic in statistics:
            rule, n_images = sources[statistic] if statistic in NINE_LABEL_STATISTICS else (STATISTICS[statistic][0],
                                                                                              images)
            try:
                run = load_run(name, rule, n_images)
            except FileNotFoundError:
                continue
            d, ok = run_distortions(run, statistic)
            values = _aggregates(d, ok, run.misclassified)
            correct = ~run.misclassified
            ref = paper.TABLE1[name]["distortion"]
            rows.append({"model": name, "statistic": statistic, "images": len(d),
                         "attack": "fast" if rule == "every-fast" else "paper's",
                         "misclassified": int(run.misclassified.sum()),
                         "success % (of correct)": round(100 * ok[correct].double().mean().item(), 2),
                         **{k: round(v, 4) for k, v in values.items()}, "paper": ref,
                         **{f"ratio {k}": round(v / ref, 3) for k, v in values.items()}})
    return pd.DataFrame(rows)


def reading_fit(table: pd.DataFrame) -> pd.DataFrame:
    """Mean |log(ours / paper)| over the models, per target statistic (rows) and aggregate (columns); 0 is a perfect fit."""
    fit = {k: np.log(table[f"ratio {k}"]).abs().groupby(table["statistic"]).mean() for k in AGGREGATES}
    return pd.DataFrame(fit).round(3)


def choose_target_reading(table: pd.DataFrame) -> tuple[str, str]:
    """(target statistic, aggregate) whose distortions come closest to Table 1's column (training images only)."""
    stacked = reading_fit(table).stack()
    statistic, aggregate = stacked.idxmin()
    return str(statistic), str(aggregate)


# ----------------------------------------------------------------------------------------------
# The two recipes side by side
# ----------------------------------------------------------------------------------------------


def _lbfgs_summary(history) -> tuple[int | None, bool | None]:
    """(iterations, converged) of a paper-recipe training log; Nones for Adam logs."""
    log = history["classifier"] if isinstance(history, dict) else history
    if not log or "iteration" not in log[-1]:
        return None, None
    return log[-1]["iteration"], log[-1]["converged"]


def recipes_table(names: tuple[str, ...] = paper.TABLE1_MODELS, columns: tuple[str, ...] = ("train_error",
                                                                                          "test_error")) -> pd.DataFrame:
    """Each model's recorded errors under the paper recipe and the modern one, beside the paper's (from the records)."""
    reference = {**paper.TABLE1, **paper.TABLE3}
    rows = []
    for name in names:
        for recipe, model in (("paper (L-BFGS)", name), ("modern (Adam)", f"{name}-modern")):
            record = zoo.record(model)
            iterations, converged = _lbfgs_summary(record["history"])
            row = {"model": name, "recipe": recipe}
            for column in columns:
                ours, theirs = record[column], reference[name][column]
                row[f"{column.replace('_', ' ')} %"] = round(ours, 2)
                row[f"paper {column.replace('_', ' ')} %"] = theirs
                row[f"{column.replace('_error', '')} gap (pp)"] = round(ours - theirs, 2)
            adam = f"none: Adam, {record['spec']['epochs']} epochs"
            row["L-BFGS iterations"] = iterations if iterations is not None else adam
            row["converged"] = ("yes" if converged else "no: cap") if converged is not None else "no rule: fixed epochs"
            row["training s"] = record["train_seconds"]
            rows.append(row)
    return pd.DataFrame(rows)


def within(frame: pd.DataFrame, tolerance: float = ERROR_PP) -> pd.Series:
    """Per row of `recipes_table`: every error within `tolerance` percentage points of the paper's."""
    gaps = frame[[c for c in frame.columns if c.endswith("gap (pp)")]]
    return (gaps.abs() <= tolerance).all(axis=1)


def cross_model_table(rule: str, images: int | str = "all") -> pd.DataFrame:
    """Table 2 from the committed runs: % of each row model's adversarial training images that each column model gets wrong.

    Every image of the run counts, as in the paper's "error on the distorted training set": those the
    row model already misclassifies enter undistorted.
    """
    labels = load_mnist(train=True)[1]
    rows = {}
    for name in paper.TABLE1_MODELS:
        run = load_run(name, rule, images)
        y = labels[run.indices.long()]
        wrong = run.predictions.long() != y[:, None]
        rows[name] = [round(100 * w, 1) for w in wrong.double().mean(0).tolist()]
    return pd.DataFrame.from_dict(rows, orient="index", columns=list(paper.TABLE1_MODELS))


# The attack rule (attack.TARGET_RULES) that makes one example per image under each statistic: the mean
# over the nine wrong labels is what a uniformly drawn wrong label gives on average.
RULE_OF_STATISTIC = {"runner-up": "runner-up", "random": "random", "best": "best", "mean of nine": "random"}


def chosen_rule(images: int | str = "all") -> str:
    """The attack rule of the reading that fits Table 1 best (`choose_target_reading` on the committed runs)."""
    statistic, _ = choose_target_reading(distortion_table(images))
    return RULE_OF_STATISTIC[statistic]


# ----------------------------------------------------------------------------------------------
# What we found: the paper's claims of Table 1, verdicts computed
# ----------------------------------------------------------------------------------------------


def model_findings(recipes: pd.DataFrame, tolerance: float = ERROR_PP) -> list[Finding]:
    """One finding per paper-recipe model of `recipes_table`: its errors within `tolerance` pp of the paper's."""
    rows = recipes[recipes["recipe"].str.startswith("paper")]
    if rows.empty:
        raise ValueError("no paper-recipe rows in the table: pass what recipes_table returns")
    ours_columns = [c for c in rows.columns if c.endswith(" %") and not c.startswith("paper ")]
    kinds = " / ".join(c.removesuffix(" error %") for c in ours_columns)
    found = []
    for (_, row), ok in zip(rows.iterrows(), within(rows, tolerance)):
        label = {**paper.TABLE1, **paper.TABLE3}[row["model"]]["label"]
        found.append(Finding(f"{label}: {kinds} error (%)",
                             " / ".join(f"{row[f'paper {c}']:g}" for c in ours_columns),
                             " / ".join(f"{row[c]:.2f}" for c in ours_columns), bool(ok),
                             "" if ok else f"more than {tolerance:g} pp off", key=f"errors:{row['model']}"))
    return found


def distortion_findings(table: pd.DataFrame, statistic: str, aggregate: str, factor: float = DISTORTION_FACTOR,
                        noise: pd.DataFrame | None = None, noise_tolerance: float = SUBSET_ERROR_PP) -> list[Finding]:
    """Table 1's distortion claims under one reading (`distortion_table` rows), and Figure 7's noise claim."""
    if aggregate not in AGGREGATES:
        raise ValueError(f"unknown aggregate {aggregate!r}; valid: {', '.join(AGGREGATES)}")
    rows = table[table["statistic"] == statistic].set_index("model")
    if rows.empty:
        raise ValueError(f"no rows for the statistic {statistic!r} in the table")
    success = rows["success % (of correct)"]
    found = [Finding("every training image has an adversarial example ('0% accuracy')", "100% of the training set",
                     f"{success.min():g}% of the correctly classified images (least of {len(rows)} models)",
                     bool((success == 100).all()), key="zero-accuracy")]
    for name, row in rows.iterrows():
        ratio = row[f"ratio {aggregate}"]
        ok = within_factor(row[aggregate], row["paper"], factor)
        found.append(Finding(f"{paper.TABLE1[name]['label']}: minimal distortion", f"{row['paper']:g}",
                             f"{row[aggregate]:.4f} ({statistic} target, {aggregate}; ratio {ratio:.2f})", bool(ok),
                             f"within a factor of {factor:g}" if ok else f"not within a factor of {factor:g}",
                             key=f"min-distortion:{name}"))
    softmax = [m for m in paper.TABLE1_MODELS if m.startswith("softmax") and m in rows.index]
    ours = rows.loc[softmax, aggregate]
    found.append(Finding("stronger weight decay, larger minimal distortion (the three softmax models)",
                         " < ".join(f"{paper.TABLE1[m]['distortion']:g}" for m in softmax),
                         " < ".join(f"{v:.4f}" for v in ours) if ours.is_monotonic_increasing
                         else ", ".join(f"{v:.4f}" for v in ours), bool(ours.is_monotonic_increasing),
                         key="decay-distortion"))
    if noise is not None:
        reading = closest_noise_reading(noise)
        row = noise[noise["noise"] == reading].iloc[0]
        accuracy = {c.removesuffix(" accuracy %"): row[c] for c in noise.columns
                    if c.endswith(" accuracy %") and not c.startswith("paper")}
        near = [abs(a - row["paper accuracy %"]) <= noise_tolerance for a in accuracy.values()]
        ok = all(near)
        found.append(Finding(f"Gaussian noise of stddev {row['stddev']:g} leaves about half the images correct "
                             "(Figure 7)", f"{row['paper accuracy %']:g}%",
                             ", ".join(f"{m} {a:g}%" for m, a in accuracy.items()) + f" (noise {reading})", ok,
                             f"every model within {noise_tolerance:g} pp" if ok
                             else f"{'not every' if any(near) else 'no'} model within {noise_tolerance:g} pp", key="noise-half"))
    return found


def closest_noise_reading(frame: pd.DataFrame) -> str:
    """Which row of `experiments.noise_accuracy` (clipped or not) has accuracies closest to the paper's 51%."""
    accuracy = frame[[c for c in frame.columns if c.endswith("accuracy %") and not c.startswith("paper")]]
    if accuracy.empty:
        raise ValueError("no accuracy columns in the noise table")
    gap = (accuracy.sub(frame["paper accuracy %"], axis=0)).abs().mean(axis=1)
    return str(frame.loc[gap.idxmin(), "noise"])
