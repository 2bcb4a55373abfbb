"""Chapter 4's experiment: every choice on a validation split, finals with three seeds, verdicts from the records.

Protocol. The 784-100-100-10 sigmoid net with the paper's weight decay (read as chapter 1 chose,
`zoo.PAPER_DECAY`). Sweep runs train on the first 50,000 training images and are scored on the last
10,000 (the validation split); the test set is never looked at. The pool's factors are swept one at a
time around a centre, then again around the first stage's best run (with the paper's full-batch L-BFGS
too). For each method the sweep run with the lowest validation error is chosen, and its final is trained
on all 60,000 training images with three seeds and tested once. Each run is one JSON record in `FOLDER` (one file per run, so a stopped
`python -m lib adversarial-training` resumes where it was); the chapter reads the records.
"""
from __future__ import annotations

import hashlib
import io
import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import pandas as pd
import torch
from tqdm import tqdm

from . import DATA_DIR, attack, data, models, one_thread, paper, zoo
from .adversarial_training import LAYERS, TARGETS, AdversarialPool, PoolSettings, fgsm_loss, pool_loss
from .findings import Finding
from .train import classification_loss, error_rate, fit, fit_lbfgs

VERSION = 1  # bump when a run's result would change: records of other versions are ignored
FOLDER = DATA_DIR / "results" / "adversarial_training"
METHODS = ("weight decay", "dropout", "adversarial pool", "FGSM")
RECIPES = ("modern", "paper")  # Adam on mini-batches of 64 for 30 epochs; full-batch L-BFGS until convergence
PAPER_METHODS = ("weight decay", "adversarial pool")  # dropout and FGSM draw anew at every step: no fixed objective
LBFGS_POOL = {"refresh_every": 50, "fraction": 0.2}  # paper recipe: refresh after every 50 L-BFGS iterations
VALIDATION = 10_000  # the last 10,000 training images
HIDDEN, EPOCHS, BATCH, LR, LBFGS_ITERATIONS = (100, 100), 30, 64, 1e-3, 1500
SEEDS = (0, 1, 2)
DISTORTION_IMAGES = 200  # test images whose mean minimal distortion measures a final's robustness


@dataclass(frozen=True)
class Run:
    """One training run: the method and its setting, the seed, and whether it is a sweep run or a final."""

    method: str
    recipe: str = "modern"
    dropout: float = 0.0
    pool: PoolSettings | None = None
    epsilon: float = 0.0  # FGSM's step
    seed: int = 0
    final: bool = False  # True: all 60,000 training images, tested once; False: 50,000, validated

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; valid: {', '.join(METHODS)}")
        if self.recipe not in RECIPES or (self.recipe == "paper" and self.method not in PAPER_METHODS):
            raise ValueError(f"recipe must be one of {RECIPES}; 'paper' (full-batch L-BFGS) only for "
                             f"{' and '.join(PAPER_METHODS)}, got {self.recipe!r} for {self.method!r}")
        if (self.method == "dropout") != (self.dropout > 0) or not 0 <= self.dropout < 1:
            raise ValueError(f"dropout needs a rate in (0, 1) and only the dropout method has one, got {self.dropout}")
        if (self.method == "adversarial pool") != (self.pool is not None):
            raise ValueError("pool settings are needed by, and only by, the adversarial pool method")
        if (self.method == "FGSM") != (self.epsilon > 0):
            raise ValueError(f"FGSM needs a positive epsilon and only FGSM has one, got {self.epsilon}")

    @property
    def key(self) -> str:
        """A short hash of the run and VERSION: its record's file name."""
        text = json.dumps({**asdict(self), "version": VERSION}, sort_keys=True)
        return hashlib.sha1(text.encode()).hexdigest()[:12]

    def setting(self) -> str:
        """The run's setting in words (without method and seed)."""
        if self.method == "weight decay":
            return f"{self.recipe} recipe"
        if self.method == "dropout":
            return f"rate {self.dropout:g}"
        if self.method == "FGSM":
            return f"epsilon {self.epsilon:g}"
        p = self.pool
        every = f"{p.refresh_every} iterations (L-BFGS)" if self.recipe == "paper" else f"{p.refresh_every} batches"
        return f"layers {'+'.join(p.layers)}, weight {p.weight:g}, every {every}, x{p.magnify:g}, {p.target}"


@dataclass
class RunRecord:
    """What one run measured: its per-epoch log, validation or test error, robustness, time."""

    run: Run
    history: list[dict]  # per epoch (per 50 iterations for L-BFGS): loss and validation error (sweep runs)
    seconds: float  # training time, one thread
    validation_error: float | None = None  # %, sweep runs
    test_error: float | None = None  # %, finals
    distortion: float | None = None  # finals: mean minimal distortion (runner-up) on DISTORTION_IMAGES test images
    fresh_examples: int = 0  # adversarial examples generated for the pools
    pool_success: float | None = None  # share of them that reached their target
    versions: dict = field(default_factory=dict)


FACTORS = ("layers", "weight", "refresh_every", "magnify", "target")  # the pool's swept settings
LEVELS = {"layers": [(layer,) for layer in LAYERS] + [LAYERS], "weight": (0.1, 0.25, 0.5, 1.0, 2.0),
          "refresh_every": (25, 50, 100, 200), "magnify": (1.0, 1.5, 2.0), "target": TARGETS}  # the pool's sweep


def sweep_runs(records: Sequence[RunRecord] | None = None) -> list[Run]:
    """The sweep: both recipes; dropout rates; FGSM steps; the pool's factors one at a time around a centre.

    With the first stage's `records`, a second stage follows: every factor but the layers varied again,
    one at a time, around the first stage's best pool run (lowest validation error).
    """
    first = [Run("weight decay", recipe=r) for r in RECIPES] + \
        [Run("dropout", dropout=p) for p in (0.1, 0.2, 0.3, 0.5)] + \
        [Run("FGSM", epsilon=e) for e in (0.05, 0.1, 0.2, 0.3)] + \
        [Run("adversarial pool", pool=p) for p in _one_at_a_time(PoolSettings(), FACTORS)]
    if records is None:
        return first
    best = _first_stage_best(first, {r.run: r for r in records})
    second = [Run("adversarial pool", pool=p) for p in _one_at_a_time(best, FACTORS[1:])]
    second.append(Run("adversarial pool", recipe="paper", pool=replace(best, **LBFGS_POOL)))  # the paper's optimiser
    return first + [run for run in second if run not in first]


def _first_stage_best(first: Sequence[Run], by_run: dict[Run, RunRecord]) -> PoolSettings:
    """The pool settings of the first stage's run with the lowest validation error (every one must have a record)."""
    pools = [run for run in first if run.method == "adversarial pool"]
    if not all(run in by_run for run in pools):
        raise ValueError("the second stage needs every first-stage pool record")
    return min(pools, key=lambda run: by_run[run].validation_error).pool


def _one_at_a_time(centre: PoolSettings, factors: Sequence[str]) -> list[PoolSettings]:
    """The centre, then each factor's other levels with the rest at the centre's."""
    out = [centre]
    for factor in factors:
        out += [replace(centre, **{factor: level}) for level in LEVELS[factor] if level != getattr(centre, factor)]
    return out


def choose(records: Sequence[RunRecord]) -> dict[str, Run]:
    """Per method, the sweep run with the lowest validation error (ties: the earlier run)."""
    chosen: dict[str, RunRecord] = {}
    for rec in records:
        if rec.run.final or rec.validation_error is None:
            continue
        best = chosen.get(rec.run.method)
        if best is None or rec.validation_error < best.validation_error:
            chosen[rec.run.method] = rec
    missing = [m for m in METHODS if m not in chosen]
    if missing:
        raise ValueError(f"no sweep record for {missing}: run `python -m lib adversarial-training` first")
    return {m: chosen[m].run for m in METHODS}


def layer_base(records: Sequence[RunRecord]) -> Run:
    """The modern-recipe pool run with the lowest validation error: the layer comparison varies its layers."""
    pools = [r for r in records if not r.run.final and r.run.method == "adversarial pool" and r.run.recipe == "modern"
             and r.validation_error is not None]
    if not pools:
        raise ValueError("no modern-recipe pool record in the sweep: run `python -m lib adversarial-training` first")
    return min(pools, key=lambda r: r.validation_error).run


def final_runs(records: Sequence[RunRecord]) -> list[Run]:
    """Each method's chosen run with every seed on all training images, plus the best modern pool on each layer
    set and weight decay under both recipes."""
    chosen = choose(records)
    base = layer_base(records)
    variants = [replace(base, pool=replace(base.pool, layers=layers)) for layers in LEVELS["layers"]]
    variants += [Run("weight decay", recipe=recipe) for recipe in RECIPES]  # both: a same-recipe comparison
    runs = [*chosen.values(), *(run for run in variants if run not in chosen.values())]
    return [replace(run, seed=seed, final=True) for run in runs for seed in SEEDS]


def split_data(final: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """(train images, labels, validation images, labels): all 60,000 for a final, else 50,000 and the last 10,000."""
    x, y = data.load_mnist(train=True)
    if final:
        return x, y, None, None
    return x[:-VALIDATION], y[:-VALIDATION], x[-VALIDATION:], y[-VALIDATION:]


def train_run(run: Run, progress: bool = True) -> tuple[RunRecord, torch.nn.Sequential, list[dict]]:
    """Train one run on one thread; returns its record, the model and (pool runs) per-epoch pool snapshots."""
    with one_thread():
        torch.set_flush_denormal(True)
        x, y, val_x, val_y = split_data(run.final)
        torch.manual_seed(run.seed)
        model = models.sigmoid_mlp(HIDDEN, dropout=run.dropout)
        penalty = lambda m: models.weight_decay_penalty(m, zoo.SIGMOID_DECAY, zoo.PAPER_DECAY)  # noqa: E731
        snapshots: list[dict] = []
        pool = None
        if run.method == "adversarial pool":
            pool = AdversarialPool(x, y, run.pool, seed=run.seed)
            loss = pool_loss(pool, penalty, whole=run.recipe == "paper")
        elif run.method == "FGSM":
            loss = fgsm_loss(run.epsilon, penalty)
        else:
            loss = classification_loss(penalty)

        def log(step: int, m: torch.nn.Module) -> dict:
            entry = {} if val_x is None else {"validation_error": round(error_rate(m, val_x, val_y), 4)}
            if pool is not None and run.recipe == "paper":  # m: a float32 copy of the current weights
                pool.refresh(m)
            if pool is not None and "input" in run.pool.layers and pool.latest:
                snapshots.append(pool.snapshot(m))
            return entry

        start = time.perf_counter()
        desc = f"{run.method} ({run.setting()}), seed {run.seed}"
        if run.recipe == "paper":
            every = run.pool.refresh_every if pool is not None else 50
            history = fit_lbfgs(model, x, y, loss, max_iter=LBFGS_ITERATIONS, log_every=every, desc=desc,
                                progress=progress, on_log=log)
        else:
            history = fit(model, x, y, loss, epochs=EPOCHS, batch_size=BATCH, lr=LR, seed=run.seed, desc=desc,
                          progress=progress, on_epoch=log)
        seconds = time.perf_counter() - start
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        record = RunRecord(run, history, round(seconds, 1), versions=zoo.versions())
        if pool is not None:
            record.fresh_examples, record.pool_success = pool.made, round(pool.success_rate, 4)
        if run.final:
            test_x, test_y = data.load_mnist(train=False)
            record.test_error = round(error_rate(model, test_x, test_y), 4)
            record.distortion = round(robustness(model), 5)
        else:
            record.validation_error = round(error_rate(model, val_x, val_y), 4)
    return record, model, snapshots


def robustness(model: torch.nn.Module, n: int = DISTORTION_IMAGES) -> float:
    """Mean minimal distortion (the book's full attack, runner-up target) over the correctly classified of n test images."""
    x, y = data.fixed_subset(n, train=False, seed=0)
    result = attack.min_distortion(model, x, y, target="runner-up")
    moved = result.success & ~result.misclassified
    return result.distortion[moved].mean().item()


def record_path(run: Run, suffix: str = ".json") -> Path:
    """Where a run's record (or, with suffix ".pt" / ".pool.pt", its weights / pool snapshots) is kept."""
    return FOLDER / f"{run.key}{suffix}"


def save(record: RunRecord, model: torch.nn.Module | None = None, snapshots: list[dict] | None = None) -> None:
    """Write the record (and, for seed-0 finals, the weights and pool snapshots) atomically beside the others."""
    payload = json.dumps({**asdict(record), "version": VERSION}, indent=1) + "\n"
    if model is not None:
        buffer = io.BytesIO()
        torch.save(model.state_dict(), buffer)
        data.atomic_write_bytes(record_path(record.run, ".pt"), buffer.getvalue())
    if snapshots:
        buffer = io.BytesIO()
        stacked = {k: torch.stack([s[k] for s in snapshots]) for k in snapshots[0]}
        torch.save({k: v.half() if v.is_floating_point() else v for k, v in stacked.items()}, buffer)  # for display
        data.atomic_write_bytes(record_path(record.run, ".pool.pt"), buffer.getvalue())
    data.atomic_write_bytes(record_path(record.run), payload.encode())


def _from_json(entry: dict) -> RunRecord:
    run = dict(entry["run"])
    if run["pool"] is not None:
        run["pool"] = PoolSettings(**{**run["pool"], "layers": tuple(run["pool"]["layers"])})
    fields = {k: v for k, v in entry.items() if k not in ("run", "version")}
    return RunRecord(Run(**run), **fields)


def load(runs: Iterable[Run]) -> list[RunRecord]:
    """The committed records of `runs`; a missing one names the command that makes it."""
    records, missing = [], []
    for run in runs:
        path = record_path(run)
        if not path.exists():
            missing.append(f"{run.method} ({run.setting()}, seed {run.seed}{', final' if run.final else ''})")
            continue
        records.append(_from_json(json.loads(path.read_text())))
    if missing:
        raise FileNotFoundError(f"{len(missing)} record(s) missing, e.g. {missing[0]}: run "
                                "`python -m lib adversarial-training` (resumable)")
    return records


def sweep_records() -> list[RunRecord]:
    """The committed records of both stages of the sweep."""
    first = load(sweep_runs())
    return first + load(sweep_runs(first)[len(first):])


def all_records() -> list[RunRecord]:
    """The committed sweep records and the finals of the settings they choose."""
    sweep = sweep_records()
    return sweep + load(final_runs(sweep))


def load_model(run: Run) -> torch.nn.Sequential:
    """The weights saved for a seed-0 final."""
    path = record_path(run, ".pt")
    if not path.exists():
        raise FileNotFoundError(f"no weights for {run.method} ({run.setting()}) at {path}")
    model = models.sigmoid_mlp(HIDDEN, dropout=run.dropout)
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.eval()


def pool_snapshots(run: Run) -> dict[str, torch.Tensor]:
    """Per epoch, eight fresh input-layer pool examples of a seed-0 pool final."""
    path = record_path(run, ".pool.pt")
    if not path.exists():
        raise FileNotFoundError(f"no pool snapshots for {run.setting()} at {path}")
    return {k: v.float() if v.is_floating_point() else v
            for k, v in torch.load(path, map_location="cpu", weights_only=True).items()}


def execute(runs: Sequence[Run], workers: int = 1, progress: bool = True) -> list[RunRecord]:
    """Train every run that has no record yet (in `workers` processes of one thread), save each as it ends."""
    todo = [run for run in runs if not record_path(run).exists()]
    if todo:
        FOLDER.mkdir(parents=True, exist_ok=True)
        bar = tqdm(total=len(todo), desc="adversarial-training runs", disable=not progress)
        if workers <= 1:
            for run in todo:
                _execute_one(run, progress)
                bar.update()
        else:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor, as_completed

            context = multiprocessing.get_context("spawn")
            slowest_first = sorted(todo, key=lambda r: (r.recipe != "paper", r.method != "adversarial pool"))
            with ProcessPoolExecutor(max_workers=workers, mp_context=context) as executor:
                for job in as_completed([executor.submit(_execute_one, run, False) for run in slowest_first]):
                    job.result()
                    bar.update()
        bar.close()
    return load(runs)


def _execute_one(run: Run, progress: bool) -> None:
    record, model, snapshots = train_run(run, progress)
    keep = run.final and run.seed == 0
    save(record, model if keep else None, snapshots if keep else None)


def sweep_table(records: Sequence[RunRecord]) -> pd.DataFrame:
    """The sweep runs, one row each: method, setting, validation error, seconds, fresh pool examples."""
    return pd.DataFrame([{"method": r.run.method, "setting": r.run.setting(), "validation error %": r.validation_error,
                          "training s": r.seconds, "fresh pool examples": r.fresh_examples}
                         for r in records if not r.run.final])


def factor_effects(records: Sequence[RunRecord]) -> pd.DataFrame:
    """The pool's sweep (Adam runs), one row per (stage, factor, level): validation error; a stage's centre is
    under every factor."""
    first = sweep_runs()
    by_run = {r.run: r for r in records if not r.run.final}
    stages = [(1, PoolSettings(), FACTORS, first)]
    if all(run in by_run for run in first):
        runs = sweep_runs(list(by_run.values()))
        best = _first_stage_best(first, by_run)
        stages.append((2, best, FACTORS[1:], [run for run in runs if run not in first] + [Run("adversarial pool",
                                                                                              pool=best)]))
    rows = []
    for stage, centre, factors, runs in stages:
        for run in runs:
            if run.method != "adversarial pool" or run.recipe != "modern" or run not in by_run:
                continue  # the L-BFGS pool refreshes by iterations, not batches: it is not on these axes
            differs = [f for f in factors if getattr(run.pool, f) != getattr(centre, f)]
            for factor in differs or factors:
                level = getattr(run.pool, factor)
                rows.append({"stage": stage, "factor": factor, "level": "+".join(level) if factor == "layers" else level,
                             "centre": not differs, "validation error %": by_run[run].validation_error})
    frame = pd.DataFrame(rows)
    order = {f: [("+".join(v) if f == "layers" else v) for v in LEVELS[f]] for f in FACTORS}
    frame["rank"] = [order[f].index(v) for f, v in zip(frame["factor"], frame["level"])]
    return frame.sort_values(["stage", "factor", "rank"]).drop(columns="rank").reset_index(drop=True)


def summary(records: Sequence[RunRecord]) -> pd.DataFrame:
    """Finals grouped by setting: mean and sd of test error over seeds, mean distortion and seconds."""
    rows = [{"method": r.run.method, "setting": r.run.setting(), "seed": r.run.seed, "test_error": r.test_error,
             "distortion": r.distortion, "seconds": r.seconds} for r in records if r.run.final]
    frame = pd.DataFrame(rows)
    return (frame.groupby(["method", "setting"], sort=False)
            .agg(seeds=("seed", "count"), test_mean=("test_error", "mean"), test_sd=("test_error", "std"),
                 distortion=("distortion", "mean"), seconds=("seconds", "mean")).reset_index())


def chosen_table(records: Sequence[RunRecord]) -> pd.DataFrame:
    """Per method, the setting the validation split chose and its validation error."""
    chosen = choose(records)
    by_run = {r.run: r for r in records}
    return pd.DataFrame([{"method": m, "chosen setting": run.setting(), "validation error %": by_run[run].validation_error,
                          "sweep runs": sum(r.run.method == m and not r.run.final for r in records)}
                         for m, run in chosen.items()])


def final_table(records: Sequence[RunRecord]) -> pd.DataFrame:
    """The four methods' finals (settings: `chosen_table`): the recipe, test error mean and sd over seeds, beside the
    paper's; distortion; training time."""
    chosen = choose(records)
    table = summary(records).set_index("setting")
    rows = []
    for method, run in chosen.items():
        row = table.loc[run.setting()]
        rows.append({"method": method, "recipe": run.recipe, "seeds": int(row["seeds"]),
                     "test error % (mean)": round(row["test_mean"], 2), "sd": round(row["test_sd"], 2),
                     "paper ICLR %": paper.ADVERSARIAL_TRAINING["iclr"].get(method, float("nan")),
                     "paper v1 %": paper.ADVERSARIAL_TRAINING["v1"].get(method, float("nan")),
                     f"mean min. distortion ({DISTORTION_IMAGES} test images)": round(row["distortion"], 4),
                     "training s (mean)": round(row["seconds"])})
    return pd.DataFrame(rows)


def decay_recipes_table(records: Sequence[RunRecord]) -> pd.DataFrame:
    """Weight decay's finals under each recipe (the same-recipe comparison of `findings`): test error mean and sd."""
    table = summary(records).set_index("setting")
    rows = []
    for recipe in RECIPES:
        row = table.loc[Run("weight decay", recipe=recipe).setting()]
        rows.append({"weight decay, recipe": recipe, "seeds": int(row["seeds"]),
                     "test error % (mean)": round(row["test_mean"], 3), "sd": round(row["test_sd"], 3)})
    return pd.DataFrame(rows)  # three decimals: the two recipes' means can agree to two


def fit_table(records: Sequence[RunRecord]) -> pd.DataFrame:
    """Each method's seed-0 final: error on its own 60,000 training images beside its test error (under- or overfit)."""
    chosen = choose(records)
    by_run = {r.run: r for r in records}
    train_x, train_y = data.load_mnist(train=True)
    rows = []
    for method, run in chosen.items():
        final = replace(run, seed=0, final=True)
        rows.append({"method": method, "setting": run.setting(),
                     "training error %": round(error_rate(load_model(final), train_x, train_y), 2),
                     "test error %": by_run[final].test_error})
    return pd.DataFrame(rows)


def _layer_rows(records: Sequence[RunRecord]) -> dict[str, pd.Series]:
    """The finals' summary row of the best modern pool on each layer set, by "input", "h1", ..., "input+h1+h2"."""
    base = layer_base(records)
    table = summary(records).set_index("setting")
    return {"+".join(layers): table.loc[replace(base, pool=replace(base.pool, layers=layers)).setting()]
            for layers in LEVELS["layers"]}


def layers_table(records: Sequence[RunRecord]) -> pd.DataFrame:
    """The best modern pool on each layer alone and on all three: test error mean and sd over seeds, distortion."""
    rows = []
    for layers, row in _layer_rows(records).items():
        rows.append({"pool layers": layers, "test error % (mean)": round(row["test_mean"], 2),
                     "sd": round(row["test_sd"], 2), "seeds": int(row["seeds"]),
                     f"mean min. distortion ({DISTORTION_IMAGES} test images)": round(row["distortion"], 4)})
    return pd.DataFrame(rows)


def sweep_findings(records: Sequence[RunRecord]) -> list[Finding]:
    """What the validation split says, before any test: the recipe, the pool's factors, the other methods."""
    sweep = [r for r in records if not r.run.final]
    by_run = {r.run: r.validation_error for r in sweep}
    decay = {recipe: by_run[Run("weight decay", recipe=recipe)] for recipe in RECIPES}
    effects = factor_effects(sweep)
    weights = effects[effects.factor == "weight"]
    rising = all(stage["validation error %"].is_monotonic_increasing for _, stage in weights.groupby("stage"))
    layers = effects[(effects.factor == "layers") & (effects.stage == 1)].set_index("level")["validation error %"]
    best = {m: min(r.validation_error for r in sweep if r.run.method == m and r.run.recipe == "modern")
            for m in METHODS}
    lbfgs_pool = [r.validation_error for r in sweep if r.run.method == "adversarial pool" and r.run.recipe == "paper"]

    def beats(key: str, claim: str, paper_text: str, a: float, b: float, ours: str) -> Finding:
        """a below b by more than twice the standard error of a difference of two validation errors."""
        noise = 2 * 100 * ((a / 100 * (1 - a / 100) + b / 100 * (1 - b / 100)) / VALIDATION) ** 0.5
        note = f"lower, but by less than {noise:.2f} pp (twice the split's standard error)" if b - noise <= a < b else ""
        return Finding(claim, paper_text, ours, a < b - noise, note, key=key)

    found = [
        beats("val-lbfgs-baseline", "the paper's recipe (full-batch L-BFGS) gives the better weight-decay baseline",
              "'trained with L-BFGS until convergence'", decay["paper"], decay["modern"],
              f"{decay['paper']:.2f} (L-BFGS) vs {decay['modern']:.2f} (Adam)"),
        Finding("higher layers' pools are better (h2 < h1 < input)", "'higher layers ... more useful'",
                f"input {layers['input']:.2f}, h1 {layers['h1']:.2f}, h2 {layers['h2']:.2f}, all "
                f"{layers['input+h1+h2']:.2f}", layers["h2"] < layers["h1"] < layers["input"], key="val-higher-layers"),
        Finding("a lighter pool is better: validation error rises with the pool's weight (both stages)", "–",
                "; ".join(f"stage {k}: " + ", ".join(f"{w:g}: {e:.2f}" for w, e in zip(g.level, g["validation error %"]))
                          for k, g in weights.groupby("stage")), rising, key="val-lighter-pool"),
        beats("val-pool-vs-decay", "the best pool beats weight decay trained the same way (Adam)", "pool < weight decay",
              best["adversarial pool"], decay["modern"], f"{best['adversarial pool']:.2f} vs {decay['modern']:.2f}"),
        beats("val-fgsm-vs-decay", "FGSM beats weight decay trained the same way (Adam)", "– (Goodfellow et al. 2015)", best["FGSM"],
              decay["modern"], f"{best['FGSM']:.2f} vs {decay['modern']:.2f}"),
        beats("val-dropout-vs-decay", "dropout beats weight decay trained the same way (Adam)", "dropout < weight decay", best["dropout"],
              decay["modern"], f"{best['dropout']:.2f} vs {decay['modern']:.2f}"),
    ]
    if lbfgs_pool:
        found.append(beats("val-pool-vs-decay-lbfgs", "the pool beats weight decay under the paper's optimiser", "pool < weight decay",
                           min(lbfgs_pool), decay["paper"], f"{min(lbfgs_pool):.2f} vs {decay['paper']:.2f} (both L-BFGS)"))
    return found


def findings(records: Sequence[RunRecord]) -> list[Finding]:
    """The paper's adversarial-training claims, decided on the finals' 3-seed mean test errors."""
    chosen = choose(records)
    table = summary(records).set_index("setting")
    main = {m: table.loc[chosen[m].setting()] for m in METHODS}
    mean = {m: float(row["test_mean"]) for m, row in main.items()}
    sd = {m: float(row["test_sd"]) for m, row in main.items()}
    layer_means = {layers: float(row["test_mean"]) for layers, row in _layer_rows(records).items()}
    iclr = paper.ADVERSARIAL_TRAINING["iclr"]
    pool, dropout, decay = mean["adversarial pool"], mean["dropout"], mean["weight decay"]
    recipe = chosen["adversarial pool"].recipe
    same = table.loc[Run("weight decay", recipe=recipe).setting()]  # weight decay under the pool's own recipe
    same_mean, same_sd = float(same["test_mean"]), float(same["test_sd"])

    def clear(a: str, b: str) -> bool:
        """Mean of a below b's by more than the two seed sds together."""
        return mean[b] - mean[a] > sd[a] + sd[b]

    def fmt(m: str) -> str:
        return f"{mean[m]:.2f} ± {sd[m]:.2f}"

    single = [layer_means[layer] for layer in LAYERS]
    ordered = pool < dropout < decay
    spread = ordered and not (clear("adversarial pool", "dropout") and clear("dropout", "weight decay"))
    return [
        Finding("adversarial pool < dropout < weight decay (test error)",
                f"{iclr['adversarial pool']:g} < {iclr['dropout']:g} < {iclr['weight decay']:g} (ICLR)",
                f"{fmt('adversarial pool')}, {fmt('dropout')}, {fmt('weight decay')} (3 seeds)", ordered,
                "the order holds by less than the seeds' spread" if spread else "", key="pool-order"),
        Finding("the pool brings test error below 1.2%", f"< {iclr['adversarial pool']:g}%",
                f"{pool:.2f}% (3-seed mean)", pool <= iclr["adversarial pool"], key="pool-below"),
        Finding("the pool beats weight decay alone", f"{iclr['adversarial pool']:g} vs {iclr['weight decay']:g}",
                f"{fmt('adversarial pool')} vs {fmt('weight decay')}", clear("adversarial pool", "weight decay"),
                key="pool-vs-decay"),
        Finding(f"the pool beats weight decay trained the same way "
                f"({'Adam, mini-batches' if recipe == 'modern' else 'full-batch L-BFGS'})",
                f"{iclr['adversarial pool']:g} vs {iclr['weight decay']:g} (both L-BFGS in the paper)",
                f"{fmt('adversarial pool')} vs {same_mean:.2f} ± {same_sd:.2f} ({recipe} recipe)",
                same_mean - pool > sd["adversarial pool"] + same_sd, key="pool-vs-decay-same-recipe"),
        Finding("higher layers' examples are more useful", "'more useful than those on the input or lower layers'",
                ", ".join(f"{k} {v:.2f}" for k, v in layer_means.items()) + " (3-seed means)",
                single[2] < single[1] < single[0], key="higher-layers"),
        Finding("the pool beats the follow-up's FGSM training", "– (Goodfellow et al. 2015, after the paper)",
                f"{fmt('adversarial pool')} vs FGSM {fmt('FGSM')}", clear("adversarial pool", "FGSM"),
                key="pool-vs-fgsm"),
    ]
