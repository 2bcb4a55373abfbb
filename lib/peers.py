"""The attack since 2013: today's minimum-norm attacks beside the paper's, on the same images and targets.

Peers: Foolbox 3's DDN, Brendel-Bethge, Carlini-Wagner L2 and FMN (also as FMN*, with the projection
that Foolbox 3.3.4's L2 FMN leaves out), and torchattacks' FAB, each over a few step budgets, plus the
exact minimum (a convex QP) on the linear softmax models. Every method attacks the same correctly
classified test images towards the same labels (the runner-up rule of `attack.min_distortion`: the
targets of our AttackResult, passed to Foolbox as a TargetedMisclassification), on one thread, and
is measured the same way: success is argmax f(x_adv) == target, distortion the book's
sqrt(sum r^2 / 784) = ||r||_2 / 28, wall seconds.
Every call of the model is counted (`CountingModel`): gradient evaluations per image sit beside the seconds.
`benchmarks/bench_peers.py` runs them and commits compact results to data/results/peers/; the book
reads those (`load`) and never runs the peers. The same comparison on an ImageNet network and the
natural-images chapter's photos, toward "ostrich" and the runner-up (`benchmarks/bench_imagenet_peers.py`,
`load_imagenet`, `imagenet_findings`), also records where each method ends (`alignment`) and how ours
converges over its search (`PeerResult.trace`). Foolbox, torchattacks and numba are imported only
when a peer runs.
"""
from __future__ import annotations

import contextlib
import inspect
import io
import json
import math
import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from . import DATA_DIR, lbfgsb, one_thread, paper, polish_walk
from .attack import AttackResult, VERSION, distortion, lbfgs_attack, logit_margin, min_distortion, predict
from .fast_attack import VERSION as FAST_VERSION, fast_attack
from .data import atomic_write_bytes, load_mnist, subset_indices
from .findings import Finding

PIXELS = 784  # MNIST: the book's distortion is ||r||_2 / sqrt(PIXELS)
RULE = "runner-up"  # the target rule every method here attacks
RESULTS_DIR = DATA_DIR / "results" / "peers"
MODELS = (*paper.TABLE1_MODELS, "Conv")
LINEAR_MODELS = ("softmax-1e-4", "softmax-1e-2", "softmax-1")  # where the exact QP gives the true minimum
SPEED_MODELS = ("N100-100-10", "Conv")  # where ours is timed against DDN at equal distortion
OURS, EXACT = "ours", "exact QP"
FAST = "ours-fast"  # lib.fast_attack; its budget is the polish's L-BFGS iterations
SHARP = "ours-sharp"  # lib.attack with SHARP_OPTIONS: the same c search on the sharpened cross-entropy
SHARP_OPTIONS = {"loss": "sharp", "warm_start": False}  # chosen by benchmarks/bench_sharp_temperature.py
WALK = "ours-walk"  # lib.polish_walk.from_gradient_start; budget: the walk's L-BFGS runs
WALK_DDN = "DDN+walk"  # lib.polish_walk from DDN-100's result, the start Brendel-Bethge gets; budget: L-BFGS runs
OWN = (OURS, SHARP, FAST, WALK, WALK_DDN, EXACT)
FROM_DDN = ("BB", WALK_DDN)  # the methods that start from BB_START's result, its cost added  # not peers: the best peer is taken over the other methods
SEARCH_OPTIONS = {OURS: {}, SHARP: SHARP_OPTIONS}  # the options of attack.lbfgs_attack behind each of ours
SPEED_FACTOR = 2.0  # the book's target: the fast attack >= 2x faster than DDN at the same distortion
FMN_FIXED = "FMN*"  # Foolbox's L2 FMN with the projection onto the epsilon ball that its code leaves out
CLOSE_ENOUGH = 1.005  # the book's target: ours <= 1.005 x the best peer (median per image)
EXACT_ENOUGH = 1.01  # the book's target: ours <= 1.01 x the exact minimum (mean per image)
SPEED_TOLERANCE = 0.005  # DDN "matches" ours once its mean distortion is within 0.5% of ours
CW_SEARCH = 9  # Carlini-Wagner's binary-search steps over c (Foolbox's default); its budget is steps per search
BB_START = ("DDN", 100)  # Brendel-Bethge needs an adversarial start: DDN-100's result (its seconds are added)
FAB_EPS = math.sqrt(PIXELS)  # FAB's norm cap: the diameter of [0,1]^784, i.e. no cap

METHODS = {  # one sentence each, for the chapter
    OURS: "Szegedy et al. (2013), this book's `lib.attack`: box-constrained L-BFGS on ||r||² + c·cross-entropy, "
          "a search over c, then a shrink to the boundary and a sharpened polish; budget = L-BFGS runs per image.",
    SHARP: "the same attack with loss=\"sharp\": the c search minimises ||r||² + c·(the cross-entropy sharpened to a "
           "temperature of 1% of the logit margin at x), which pushes against the nearest rival class only; "
           "budget = L-BFGS runs per image.",
    FAST: "this book's `lib.fast_attack`: the same box-constrained L-BFGS on the same penalty problem, run once "
          "from a boundary point found by linearised (DeepFool) steps, with c from the constraint's multiplier; "
          "budget = the L-BFGS run's iterations.",
    WALK: "this book's `lib.polish_walk`: the attack's polish (box-constrained L-BFGS on the same penalty problem) "
          "run again and again, each run restarted past the last one's end, from the book's gradient start (small "
          "steps of fixed length along the cross-entropy's gradient); budget = L-BFGS runs of 20 iterations.",
    WALK_DDN: f"the same walk from {BB_START[0]}-{BB_START[1]}'s result, the start Brendel-Bethge gets (its passes "
              "included): the book's solver, a peer's start; budget = L-BFGS runs of 20 iterations.",
    "DDN": "Decoupled Direction and Norm (Rony et al., CVPR 2019; Foolbox 3): gradient steps on the cross-entropy, "
           "projected onto an L2 sphere whose radius shrinks 5% after an adversarial iterate and grows otherwise.",
    "C&W": "Carlini & Wagner L2 (IEEE S&P 2017; Foolbox 3): Adam on ||r||² + c·max(logit margin, 0) in tanh "
           f"coordinates, {CW_SEARCH} binary-search steps over c; budget = Adam steps per c.",
    "BB": "Brendel-Bethge (NeurIPS 2019; Foolbox 3): walks along the decision boundary from an adversarial start "
          f"(here {BB_START[0]}-{BB_START[1]}'s result, its time included), one trust-region QP per step.",
    "FMN": "Fast Minimum-Norm (Pintor et al., NeurIPS 2021; Foolbox 3): DDN-like steps on the logit margin, the "
           "radius set from a linear estimate of the distance to the boundary.",
    FMN_FIXED: "the same FMN with its L2 projection repaired: Foolbox 3.3.4's `L2FMNAttack.project` multiplies "
               "by min(1, norms / norms) = 1, so the norm constraint that drives FMN is never applied.",
    "FAB": "Fast Adaptive Boundary (Croce & Hein, ICML 2020; torchattacks): projects onto the linearised "
           "boundary of the target, biased back towards x; one run, no restarts.",
    EXACT: "the exact minimum of the convex QP of a linear model (`attack_reference.exact_min_distortion_linear`).",
}
IMAGENET_NETWORK = "efficientnet-lite0"  # the network of the ImageNet comparison
IMAGENET_DIR = RESULTS_DIR / "imagenet"
IMAGENET_WALK_BATCHES = "one photo at a time"  # how the ImageNet walks run (`run_own(one_at_a_time=True)`), recorded
# ours-walk's 61 runs on ImageNet: `WalkValidation.runs_needed` on the validation photos' crops (chapter 7 checks it)
IMAGENET_BUDGETS: dict[str, tuple[int, ...]] = {OURS: (10,), SHARP: (10,), FAST: (20,), WALK: (61,), WALK_DDN: (21,),
                                                "DDN": (100, 300, 1000, 3000), "BB": (100,),
                                                "C&W": (100,), "FMN": (300,), FMN_FIXED: (300,)}
BUDGETS: dict[str, tuple[int, ...]] = {OURS: (10,), SHARP: (10,), FAST: (5, 10, 20, 40, 80), WALK: (21,), WALK_DDN: (21,),
                                       "DDN": (10, 30, 100, 300, 1000),
                                       "C&W": (100, 1000),
                                       "BB": (100, 1000), "FMN": (100, 1000), FMN_FIXED: (100, 1000),
                                       "FAB": (10, 100), EXACT: (0,)}


@dataclass
class PeerResult:
    """One method at one step budget on one model's images: per-image distortion and success, and the wall time."""

    method: str  # a key of METHODS
    budget: int  # steps (ours: L-BFGS runs per image; C&W: Adam steps per c; exact QP: 0)
    model: str
    rule: str  # the target rule (RULE)
    distortion: np.ndarray  # [N] float64 sqrt(sum r^2 / 784); inf where the attack did not reach its target
    success: np.ndarray  # [N] bool: argmax f(x_adv) == target
    seconds: float  # wall seconds for all N images, one thread
    images: np.ndarray  # [N] int: test-set indices (ImageNet: indices into photos.NAMES), the same for every method
    note: str = ""
    gradients: float = math.nan  # gradient evaluations (forward + backward passes) per image, counted
    forwards: float = math.nan  # forward passes without a gradient per image, counted
    trace: list[tuple[float, list[float]]] = field(default_factory=list)  # ours: (gradients/image so far, distortions)
    alignment: np.ndarray | None = None  # [N] cos(r, grad margin) at x_adv over the pixels inside the box (`alignment`)

    @property
    def label(self) -> str:
        """'ours', 'exact QP' or METHOD-BUDGET (e.g. 'DDN-100', 'ours-fast-20')."""
        return self.method if self.method in (OURS, SHARP, EXACT) else f"{self.method}-{self.budget}"

    @property
    def cost(self) -> "Cost":
        """Its seconds and counted passes, to add to another's (Brendel-Bethge's start)."""
        return Cost(self.seconds, self.gradients, self.forwards)

    @property
    def seconds_per_image(self) -> float:
        """Wall seconds per attacked image."""
        return self.seconds / len(self.images)


@dataclass
class PeerRun:
    """One model's committed comparison: its images, their labels and targets, every result, and provenance."""

    model: str
    images: np.ndarray  # [N] test-set indices (correctly classified ones of the seeded subset)
    labels: np.ndarray  # [N]
    targets: np.ndarray  # [N] the labels every method attacked (the runner-up's, or ImageNet's "ostrich")
    results: list[PeerResult]
    provenance: dict = field(default_factory=dict)
    rule: str = RULE  # the target rule: RULE, or one of natural_images.RULES on ImageNet


# ----------------------------------------------------------------------------------------------
# Measuring
# ----------------------------------------------------------------------------------------------


@torch.no_grad()
def measure(model: nn.Module, x: Tensor, x_adv: Tensor, target: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(distortion, success) per image: the book's distortion of x_adv - x (inf where argmax f(x_adv) != target)."""
    success = predict(model, x_adv) == target
    dist = distortion(x.double(), x_adv.double()).cpu().numpy()
    success = success.cpu().numpy()
    return np.where(success, dist, np.inf), success


def attacked_images(model: nn.Module, n: int, seed: int = 0) -> tuple[np.ndarray, Tensor, Tensor]:
    """(test-set indices, x, y) of the images of the seeded n-image test subset that the model classifies correctly.

    x and y are on the model's device.
    """
    indices = subset_indices(n, train=False, seed=seed)
    images, labels = load_mnist(train=False)
    device = next(model.parameters()).device
    x, y = images[indices].to(device), labels[indices].to(device)
    keep = predict(model, x) == y
    return indices[keep.cpu()].numpy(), x[keep], y[keep]


class CountingModel(nn.Module):
    """A model that counts the images it is given: with gradients (forward + backward) and without."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.train(model.training)  # a new module is in training mode; restoring that would put `model` in it too
        self.gradient_evaluations = 0
        self.forward_evaluations = 0

    def forward(self, x: Tensor) -> Tensor:
        if torch.is_grad_enabled() and x.requires_grad:
            self.gradient_evaluations += len(x)
        else:
            self.forward_evaluations += len(x)
        return self.model(x)


@dataclass
class Cost:
    """What one attack call on N images cost: wall seconds, and passes per image counted by `CountingModel`."""

    seconds: float
    gradients: float  # gradient evaluations per image
    forwards: float  # forward passes without a gradient per image

    def __add__(self, other: "Cost") -> "Cost":
        """Both calls' cost together (an attack's and its start's)."""
        return Cost(self.seconds + other.seconds, self.gradients + other.gradients, self.forwards + other.forwards)


def _timed(model: nn.Module, fn: Callable[[nn.Module], Tensor], n: int) -> tuple[Tensor, Cost]:
    """(fn(counted model), its Cost over n images), on one CPU thread; on CUDA the queued work is waited for."""
    counted = CountingModel(model)
    with one_thread():
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = fn(counted)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    return out, Cost(seconds, counted.gradient_evaluations / n, counted.forward_evaluations / n)


# ----------------------------------------------------------------------------------------------
# Running the methods
# ----------------------------------------------------------------------------------------------


def run_ours(model: nn.Module, name: str, x: Tensor, y: Tensor, images: np.ndarray,
             c_steps: int = 10, method: str = OURS) -> tuple[PeerResult, AttackResult]:
    """The paper's attack (`attack.min_distortion`, runner-up target) timed on one thread; also its AttackResult.

    method: OURS (the cross-entropy) or SHARP (loss="sharp").
    """
    options = SEARCH_OPTIONS[method]
    result, cost = _timed(model, lambda m: min_distortion(m, x, y, target=RULE, c_steps=c_steps, **options), len(x))
    if result.misclassified.any():
        raise ValueError("pass only correctly classified images (see attacked_images)")
    dist, success = measure(model, x, result.x_adv, result.target)
    return _result(method, c_steps, name, RULE, dist, success, cost, images), result


def _result(method: str, budget: int, name: str, rule: str, dist: np.ndarray, success: np.ndarray, cost: Cost,
            images: np.ndarray, note: str = "") -> PeerResult:
    return PeerResult(method, budget, name, rule, dist, success, cost.seconds, np.asarray(images), note,
                      cost.gradients, cost.forwards)


def run_fast(model: nn.Module, name: str, x: Tensor, y: Tensor, images: np.ndarray, target: Tensor,
             budget: int) -> PeerResult:
    """`lib.fast_attack` (runner-up target, `budget` polish iterations) timed on one thread; it must pick `target`."""
    result, cost = _timed(model, lambda m: min_distortion(m, x, y, target=RULE, method=fast_attack,
                                                           polish_steps=budget), len(x))
    if not torch.equal(result.target.cpu(), target.cpu()):
        raise ValueError(f"{name}: the fast attack chose other runner-up labels than the saved targets")
    dist, success = measure(model, x, result.x_adv, result.target)
    return _result(FAST, budget, name, RULE, dist, success, cost, images)


def run_own(model: nn.Module, name: str, x: Tensor, target: Tensor, images: np.ndarray, method: str, budget: int,
            rule: str, start: Tensor | None = None, start_cost: Cost | None = None,
            one_at_a_time: bool = False) -> tuple[PeerResult, Tensor]:
    """Ours (`lbfgs_attack`, budget = c steps), ours-fast (budget = polish steps), ours-walk or DDN+walk (budget =
    runs; DDN+walk from `start`, whose `start_cost` is added) towards given targets; x_adv too.

    one_at_a_time: the walks run on each image alone (`polish_walk.photo_by_photo`), so no end depends on the batch.
    """
    if method == WALK_DDN and start is None:
        raise ValueError(f"{WALK_DDN} needs a starting point per image (start=): {BB_START[0]}-{BB_START[1]}'s result")
    before = start_cost or Cost(0.0, 0.0, 0.0)
    trace: list[tuple[float, list[float]]] = []

    def record(m: CountingModel) -> Callable[[AttackResult], None]:
        def on_step(best: AttackResult) -> None:
            dist = torch.where(best.success, best.distortion, math.inf).double().cpu().numpy()
            trace.append((m.gradient_evaluations / len(x), _round(dist)))
        return on_step

    if method in SEARCH_OPTIONS:
        options = SEARCH_OPTIONS[method]
        run = lambda m: lbfgs_attack(m, x, target, c_steps=budget, on_step=record(m), **options)  # noqa: E731
    elif method == FAST:
        run = lambda m: fast_attack(m, x, target, polish_steps=budget)  # noqa: E731
    elif method in (WALK, WALK_DDN):
        def run(m: CountingModel) -> AttackResult:
            def walk(x: Tensor, target: Tensor, start: Tensor | None, on_run) -> polish_walk.WalkResult:
                if method == WALK:
                    return polish_walk.from_gradient_start(m, x, target, rounds=budget - 1, on_run=on_run)
                return polish_walk.polish_walk(m, x, start, target, rounds=budget - 1, on_run=on_run)

            if not one_at_a_time:
                on_run = lambda best: trace.append((before.gradients + m.gradient_evaluations / len(x),  # noqa: E731
                                                    _round(best.double().cpu().numpy())))
                return walk(x, target, start, on_run).result
            walked, spent = polish_walk.photo_by_photo(walk, x, target, start, lambda: m.gradient_evaluations)
            trace.extend((before.gradients + g, _round(best.double().cpu().numpy())) for g, best in zip(spent, walked.trace))
            return walked.result
    else:
        raise ValueError(f"run_own runs {OURS!r}, {SHARP!r}, {FAST!r}, {WALK!r} or {WALK_DDN!r}, got {method!r}")
    result, cost = _timed(model, run, len(x))
    cost = cost + before
    dist, success = measure(model, x, result.x_adv, target)
    note = f"started from {BB_START[0]}-{BB_START[1]} (its time and passes included)" if method == WALK_DDN else ""
    found = _result(method, budget, name, rule, dist, success, cost, images, note)
    found.trace = trace
    return found, result.x_adv


def alignment(model: nn.Module, x: Tensor, x_adv: Tensor, target: Tensor) -> np.ndarray:
    """Per image, cos(r, grad of the target's logit margin at x_adv) over the pixels strictly inside [0,1].

    At the minimum-norm point (a KKT point) r is a multiple of the margin's gradient on those pixels, so the
    cosine is 1; the further below 1, the further the point from a minimum along the boundary.
    """
    from .fast_attack import _margin_objective

    z = x_adv.detach().flatten(1)
    _, grad = lbfgsb.value_and_grad(_margin_objective(model, target, x.shape[1:]), z,
                                    torch.arange(len(z), device=z.device))
    inside = (z > 0) & (z < 1)
    r, g = (z - x.flatten(1)) * inside, grad * inside
    return ((r * g).sum(1) / (r.norm(dim=1) * g.norm(dim=1)).clamp_min(1e-30)).double().cpu().numpy()


def run_exact(model: nn.Module, name: str, x: Tensor, target: Tensor, images: np.ndarray) -> PeerResult:
    """The exact minimum of a linear model towards `target` (its QP solved per image by scipy), timed."""
    from .attack_reference import exact_min_distortion_linear

    exact, cost = _timed(model, lambda m: exact_min_distortion_linear(model, x, target), len(x))
    dist = exact.distortion.double().cpu().numpy()
    return _result(EXACT, 0, name, RULE, np.where(np.isfinite(dist), dist, np.inf), np.isfinite(dist), cost, images,
                   note="the QP's optimum (it ties the target, not beats it)")


def peer_attack(method: str, budget: int) -> Callable[..., Tensor]:
    """A function (model, x, target, start) -> x_adv running `method` at `budget` steps; built outside any timing.

    Building it is where Brendel-Bethge compiles its numba solver (20-60 s, once per process).
    """
    if method == "FAB":
        return _fab(budget)
    import foolbox as fb

    if method == "DDN":
        attack = fb.attacks.DDNAttack(steps=budget)
    elif method == "C&W":
        attack = fb.attacks.L2CarliniWagnerAttack(binary_search_steps=CW_SEARCH, steps=budget)
    elif method == "FMN":
        attack = fb.attacks.L2FMNAttack(steps=budget)
    elif method == FMN_FIXED:
        attack = _fixed_fmn_class()(steps=budget)
    elif method == "BB":
        attack = fb.attacks.L2BrendelBethgeAttack(steps=budget)
    else:
        raise ValueError(f"unknown peer {method!r}; valid: {', '.join(m for m in METHODS if m not in OWN)}")

    def run(model: nn.Module, x: Tensor, target: Tensor, start: Tensor | None = None) -> Tensor:
        fmodel = fb.PyTorchModel(model, bounds=(0, 1), device=x.device)
        criterion = fb.criteria.TargetedMisclassification(target)
        extra = {} if start is None else {"starting_points": start}
        x_adv, _, _ = attack(fmodel, x, criterion, epsilons=None, **extra)
        return x_adv

    return run


def _fixed_fmn_class() -> type:
    """Foolbox 3.3.4's L2FMNAttack with its projection onto the epsilon ball repaired (see FMN_FIXED)."""
    import eagerpy as ep
    import foolbox as fb
    from foolbox.devutils import atleast_kd, flatten

    class L2FMNProjected(fb.attacks.L2FMNAttack):
        def project(self, x: ep.Tensor, x0: ep.Tensor, epsilon: ep.Tensor) -> ep.Tensor:
            norms = ep.maximum(flatten(x - x0).norms.l2(axis=-1), 1e-12)
            return x0 + (x - x0) * atleast_kd(ep.minimum(1, epsilon / norms), x.ndim)

    return L2FMNProjected


def _fab(budget: int) -> Callable[..., Tensor]:
    """torchattacks' L2 FAB, targeted at the given labels, one run without restarts, no norm cap."""
    import torchattacks

    def run(model: nn.Module, x: Tensor, target: Tensor, start: Tensor | None = None) -> Tensor:
        with torch.no_grad():
            n_classes = model(x[:1]).shape[1]
        attack = torchattacks.FAB(model, norm="L2", eps=FAB_EPS, steps=budget, n_restarts=1, n_classes=n_classes,
                                  seed=0)
        targets = lambda inputs, labels: target  # noqa: E731
        if "quiet" in inspect.signature(attack.set_mode_targeted_by_function).parameters:  # torchattacks >= 3.4
            attack.set_mode_targeted_by_function(targets, quiet=True)
        else:  # older versions announce the mode on stdout
            with contextlib.redirect_stdout(io.StringIO()):
                attack.set_mode_targeted_by_function(targets)
        y = predict(model, x)
        return attack(x, y)

    return run


def run_peer(model: nn.Module, name: str, x: Tensor, target: Tensor, images: np.ndarray, method: str, budget: int,
             start: Tensor | None = None, start_cost: Cost | None = None, rule: str = RULE) -> tuple[PeerResult, Tensor]:
    """One peer at one budget on the batch, timed and counted on one thread; (result, x_adv).

    Brendel-Bethge needs `start`, an adversarial image per row; rows whose start is not adversarial
    count as failures, and `start_cost` (the start's own seconds and passes) is added to its cost.
    """
    attack_fn = peer_attack(method, budget)
    if method != "BB":
        x_adv, cost = _timed(model, lambda m: attack_fn(m, x, target), len(x))
        dist, success = measure(model, x, x_adv, target)
        return _result(method, budget, name, rule, dist, success, cost, images), x_adv
    if start is None:
        raise ValueError("Brendel-Bethge needs a starting point per image (start=)")
    ok = predict(model, start) == target
    x_adv = start.clone()
    cost = Cost(0.0, 0.0, 0.0)
    if ok.any():
        rows = ok.nonzero().squeeze(1)
        x_adv[rows], cost = _timed(model, lambda m: attack_fn(m, x[rows], target[rows], start[rows]), len(x))
    if start_cost is not None:
        cost = cost + start_cost
    dist, success = measure(model, x, x_adv, target)
    note = f"started from {BB_START[0]}-{BB_START[1]} (its time and passes included)"
    if not ok.all():
        note += f"; {int((~ok).sum())} images without an adversarial start count as failures"
    return _result(method, budget, name, rule, dist, success, cost, images, note), x_adv


# ----------------------------------------------------------------------------------------------
# Committed results
# ----------------------------------------------------------------------------------------------


def results_path(name: str, folder: Path = RESULTS_DIR, rule: str = RULE) -> Path:
    """Where a model's committed comparison under `rule` lives: MODEL.json for the MNIST models, else MODEL_RULE.json."""
    return Path(folder) / (f"{name}.json" if name in MODELS and rule == RULE else f"{name}_{rule}.json")


def environment() -> dict:
    """Versions of the libraries involved and the machine, for provenance."""
    import importlib.metadata as meta

    versions = {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__}
    for package in ("foolbox", "eagerpy", "torchattacks", "numba", "scipy"):
        try:
            versions[package] = meta.version(package)
        except meta.PackageNotFoundError:
            versions[package] = None
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"versions": versions, "machine": {"cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform()}}


def _round(values: np.ndarray, digits: int = 6) -> list[float | None]:
    """Per-image values (distortions, margins, cosines) to `digits` significant digits; None where not finite."""
    return [None if not np.isfinite(v) else float(f"{v:.{digits}g}") for v in values]


def save(run: PeerRun, folder: Path = RESULTS_DIR) -> Path:
    """Write a model's comparison as compact JSON (atomically): images, targets, per-image results, provenance."""
    record = {"model": run.model, "rule": run.rule, "provenance": run.provenance,
              "images": [int(i) for i in run.images], "labels": [int(v) for v in run.labels],
              "targets": [int(v) for v in run.targets],
              "results": [{"method": r.method, "budget": r.budget, "seconds": round(r.seconds, 4),
                           "distortion": _round(r.distortion), "success": [int(s) for s in r.success],
                           "note": r.note, **_passes(r)} for r in run.results]}
    path = results_path(run.model, folder, run.rule)
    atomic_write_bytes(path, (json.dumps(record, indent=None, separators=(",", ":")) + "\n").encode())
    return path


REQUIRED_PROVENANCE = ("weights", "attack_version", "fast_attack_version", "seed", "split", "requested_images",
                       "threads", "versions", "machine", "date", "command")


def _passes(r: PeerResult) -> dict:
    """The counted passes per image of a result, where they were counted (older results have none)."""
    extra = {k: round(v, 2) for k, v in (("gradients", r.gradients), ("forwards", r.forwards)) if math.isfinite(v)}
    if r.trace:
        extra["trace"] = [[round(g, 2), d] for g, d in r.trace]
    if r.alignment is not None:
        extra["alignment"] = [round(float(v), 5) for v in r.alignment]
    return extra


def load(name: str, folder: Path = RESULTS_DIR, rule: str = RULE) -> PeerRun:
    """A model's committed comparison; ValueError if its provenance is incomplete or its results inconsistent."""
    path = results_path(name, folder, rule)
    if not path.exists():
        raise FileNotFoundError(f"no peer comparison for {name!r} at {path}; run `python benchmarks/bench_peers.py`")
    record = json.loads(path.read_text())
    missing = [k for k in REQUIRED_PROVENANCE if k not in record.get("provenance", {})]
    if missing:
        raise ValueError(f"{path}: provenance lacks {', '.join(missing)}")
    if record["model"] != name or record["rule"] != rule:
        raise ValueError(f"{path}: holds {record['model']!r} under rule {record['rule']!r}, "
                         f"expected {name!r} under {rule!r}")
    images = np.asarray(record["images"], dtype=np.int64)
    results = []
    for r in record["results"]:
        if len(r["distortion"]) != len(images) or len(r["success"]) != len(images):
            raise ValueError(f"{path}: {r['method']}-{r['budget']} has results for a different number of images")
        dist = np.array([np.inf if v is None else v for v in r["distortion"]], dtype=np.float64)
        success = np.asarray(r["success"], dtype=bool)
        if (np.isfinite(dist) != success).any():
            raise ValueError(f"{path}: {r['method']}-{r['budget']}: a distortion is missing exactly where it failed")
        results.append(PeerResult(r["method"], int(r["budget"]), name, rule, dist, success, float(r["seconds"]),
                                  images, r.get("note", ""), float(r.get("gradients", math.nan)),
                                  float(r.get("forwards", math.nan)),
                                  [(g, [math.inf if v is None else v for v in d]) for g, d in r.get("trace", [])],
                                  np.asarray(r["alignment"]) if "alignment" in r else None))
    return PeerRun(name, images, np.asarray(record["labels"]), np.asarray(record["targets"]), results,
                   record["provenance"], rule)


def load_all(models: Sequence[str] = MODELS, folder: Path = RESULTS_DIR) -> list[PeerResult]:
    """Every committed result of the given models, one list."""
    return [r for name in models for r in load(name, folder).results]


def is_current(run: PeerRun) -> bool:
    """Whether a committed comparison was made with today's weights of its model and today's attack VERSIONs."""
    from . import zoo

    return (run.provenance["weights"] == zoo.fingerprint(run.model) and run.provenance["attack_version"] == VERSION
            and run.provenance["fast_attack_version"] == FAST_VERSION)


def walk_versions() -> dict[str, str]:
    """What each walk's committed results are keyed by: `polish_walk.VERSION`, and for ours-walk its own start's."""
    return {WALK: f"walk {polish_walk.VERSION}, start {polish_walk.OWN_START_VERSION}",
            WALK_DDN: f"walk {polish_walk.VERSION}"}


def drop_stale_walks(run: PeerRun) -> bool:
    """Drop each walk's results if they were made with another of its `walk_versions` (and record today's); whether
    any were. A run recorded before ours-walk's start had a version ("walk_version") had start 1."""
    recorded = run.provenance.get("walk_versions")
    if recorded is None and "walk_version" in run.provenance:
        legacy = run.provenance["walk_version"]
        recorded = {WALK: f"walk {legacy}, start 1", WALK_DDN: f"walk {legacy}"}
    today = walk_versions()
    stale = {m for m in today if (recorded or {}).get(m) != today[m]}
    run.results = [r for r in run.results if r.method not in stale]
    run.provenance.pop("walk_version", None)
    run.provenance["walk_versions"] = today
    return bool(stale)


def add_run_arguments(parser) -> None:
    """The benchmarks' --fresh and --device options (argparse)."""
    parser.add_argument("--fresh", action="store_true", help="ignore saved results and start over")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                        help="where every attack runs (default cpu, one thread: the results the book reads)")


def results_folder(parser, args, base: Path) -> Path:
    """Where a benchmark run writes: `base` on the CPU, base/cuda on the GPU (a parser error without CUDA)."""
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA device here")
    return base if args.device == "cpu" else base / args.device


def started_at() -> str:
    """The current UTC time, to the second, ISO format."""
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


# ----------------------------------------------------------------------------------------------
# Summary and verdicts
# ----------------------------------------------------------------------------------------------


def _by_model(results: Sequence[PeerResult]) -> dict[str, list[PeerResult]]:
    groups: dict[str, list[PeerResult]] = {}
    for r in results:
        groups.setdefault(r.model, []).append(r)
    for name, group in groups.items():
        if any(not np.array_equal(r.images, group[0].images) for r in group):
            raise ValueError(f"{name}: the methods ran on different images")
    return groups


def _one(group: Sequence[PeerResult], method: str) -> PeerResult | None:
    """The group's result of `method` (its largest budget if several), else None."""
    found = [r for r in group if r.method == method]
    return max(found, key=lambda r: r.budget) if found else None


def _ratio(num: PeerResult, den: PeerResult) -> np.ndarray:
    """Per-image distortion ratio num / den over the images where den succeeded (inf where num failed)."""
    keep = den.success
    with np.errstate(invalid="ignore", divide="ignore"):
        return num.distortion[keep] / den.distortion[keep]


def summary(results: Sequence[PeerResult]) -> pd.DataFrame:
    """Per model and method: images, success %, mean distortion (over successes), per-image ratios, passes, s/image."""
    rows = []
    for name, group in _by_model(results).items():
        ours, exact = _one(group, OURS), _one(group, EXACT)
        for r in sorted(group, key=lambda r: (list(METHODS).index(r.method) if r.method in METHODS else 99, r.budget)):
            rows.append({
                "model": name, "method": r.label, "images": len(r.images),
                "success %": 100 * r.success.mean(),
                "mean distortion": r.distortion[r.success].mean() if r.success.any() else math.nan,
                "median ratio to ours": float(np.median(_ratio(r, ours))) if ours and ours.success.any() else math.nan,
                "mean ratio to exact": (float(np.mean(_ratio(r, exact))) if exact and exact.success.any()
                                        and r.method != EXACT else math.nan),
                "gradients / image": r.gradients,
                "s / image": r.seconds_per_image,
            })
    return pd.DataFrame(rows)


def best_peer(group: Sequence[PeerResult]) -> np.ndarray:
    """Per image, the smallest distortion any peer (every method and budget but ours and the exact QP) reached."""
    peers = [r.distortion for r in group if r.method not in OWN]
    if not peers:
        raise ValueError(f"no peer results for {group[0].model if group else 'an empty group'}")
    return np.min(peers, axis=0)


def ratio_to_best_peer(group: Sequence[PeerResult], ours: PeerResult | None = None) -> np.ndarray:
    """Per image where some peer succeeded: ours (default the paper attack's result) / the best peer (inf: failed)."""
    ours = _one(group, OURS) if ours is None else ours
    if ours is None:
        raise ValueError("no result of ours to compare")
    best = best_peer(group)
    keep = np.isfinite(best)
    return ours.distortion[keep] / best[keep]


def ddn_match(group: Sequence[PeerResult], tolerance: float = SPEED_TOLERANCE,
              ours: PeerResult | None = None) -> PeerResult | None:
    """The smallest-budget DDN whose mean distortion is within `tolerance` of ours (on images both reached), else None.

    ours: the result compared (default: the paper attack's). A DDN that fails where ours succeeds does not match.
    """
    ours = _one(group, OURS) if ours is None else ours
    for r in _by_budget(group, "DDN"):
        both = ours.success & r.success
        close = r.distortion[both].mean() <= (1 + tolerance) * ours.distortion[both].mean()
        if both.sum() == ours.success.sum() and close:
            return r
    return None


def findings(results: Sequence[PeerResult]) -> list[Finding]:
    """The verdicts of the book's targets for its attack: ours vs the best peer, vs the exact QP, and vs DDN's speed."""
    groups = _by_model(results)
    found = []
    closest = {name: float(np.median(ratio_to_best_peer(g))) for name, g in groups.items()
               if _one(g, OURS) and best_peer_exists(g)}
    if closest:
        worst = max(closest, key=closest.get)
        success = min(100 * _one(groups[m], OURS).success.mean() for m in closest)
        found.append(Finding(
            "the 2013 attack finds perturbations as small as the best of today's minimum-norm attacks "
            "(runner-up target)",
            f"the book's target: per image, ours ≤ {CLOSE_ENOUGH} × the best peer (median), on every model",
            f"median ratio {min(closest.values()):.4f}–{max(closest.values()):.4f} over {len(closest)} models "
            f"(worst: {worst}); ours reaches its target on "
            + ("every image" if success == 100 else f"≥ {success:.1f}% of the images"),
            all(v <= CLOSE_ENOUGH for v in closest.values()),
            "" if all(v <= CLOSE_ENOUGH for v in closest.values()) else
            "above the target on " + ", ".join(f"{m} ({v:.4f})" for m, v in closest.items() if v > CLOSE_ENOUGH),
            key="attack-vs-peers"))
    exact = {name: float(np.mean(_ratio(_one(g, OURS), _one(g, EXACT)))) for name, g in groups.items()
             if _one(g, OURS) and _one(g, EXACT)}
    if exact:
        found.append(Finding(
            f"on the linear softmax models the 2013 attack comes within {100 * (EXACT_ENOUGH - 1):g}% of the exact "
            "minimum on average",
            f"the book's target: ours ≤ {EXACT_ENOUGH} × the exact QP (mean per-image ratio)",
            "on this comparison's test images, " + ", ".join(f"{m}: {v:.4f}" for m, v in exact.items()),
            all(v <= EXACT_ENOUGH for v in exact.values()), key="attack-vs-exact"))
    for name in SPEED_MODELS:
        if name not in groups or not _one(groups[name], OURS) or not _one(groups[name], "DDN"):
            continue
        ours = _one(groups[name], OURS)
        match = ddn_match(groups[name])
        if match is None:
            top = max((r for r in groups[name] if r.method == "DDN"), key=lambda r: r.budget)
            found.append(Finding(
                f"{name}: the 2013 attack is as fast as DDN at the same distortion",
                f"the book's target: ours vs DDN at its smallest step budget within {100 * SPEED_TOLERANCE:g}% "
                "of our distortion",
                f"no DDN budget up to {top.budget} steps comes within {100 * SPEED_TOLERANCE:g}%; ours "
                f"{ours.seconds_per_image:.3g} s/image, DDN-{top.budget} {top.seconds_per_image:.3g} s/image",
                True, "no tested DDN budget reaches our distortion", key=f"attack-speed:{name}"))
            continue
        faster = ours.seconds_per_image <= match.seconds_per_image
        found.append(Finding(
            f"{name}: the 2013 attack is as fast as DDN at the same distortion",
            f"the book's target: ours vs DDN at its smallest step budget within {100 * SPEED_TOLERANCE:g}% "
            "of our distortion",
            f"ours {ours.seconds_per_image:.3g} s/image, {match.label} {match.seconds_per_image:.3g} s/image "
            f"({ours.seconds_per_image / match.seconds_per_image:.2g}x)",
            faster, "" if faster else f"{match.label} is {ours.seconds_per_image / match.seconds_per_image:.2g}x "
                                      "faster at the same distortion", key=f"attack-speed:{name}"))
    found += [fast_finding(name, groups[name]) for name in SPEED_MODELS if name in groups
              and _one(groups[name], FAST) and _one(groups[name], "DDN") and best_peer_exists(groups[name])]
    return found


def best_peer_exists(group: Sequence[PeerResult]) -> bool:
    """Whether the group holds any peer's result."""
    return any(r.method not in OWN for r in group)


def _by_budget(group: Sequence[PeerResult], method: str) -> list[PeerResult]:
    """The group's results of `method`, smallest budget first."""
    return sorted((r for r in group if r.method == method), key=lambda r: r.budget)


def _median_to_best_peer(group: Sequence[PeerResult], result: PeerResult) -> float:
    """The median per-image ratio of `result` (any method's) to the best peer."""
    return float(np.median(ratio_to_best_peer(group, result)))


def _meets_distortion_target(group: Sequence[PeerResult], result: PeerResult) -> bool:
    """Whether `result` reached every target, within CLOSE_ENOUGH x the best peer (median per image)."""
    return bool(result.success.all()) and _median_to_best_peer(group, result) <= CLOSE_ENOUGH


def fast_choice(group: Sequence[PeerResult]) -> PeerResult | None:
    """The fast attack at its smallest budget that reaches every target within CLOSE_ENOUGH x the best peer (median)."""
    return next((r for r in _by_budget(group, FAST) if _meets_distortion_target(group, r)), None)


def fast_table(results: Sequence[PeerResult], models: Sequence[str] = SPEED_MODELS) -> pd.DataFrame:
    """Per model and budget of the fast attack: median ratio to the best peer, time, and DDN at that distortion."""
    rows = []
    for name, group in _by_model(results).items():
        if name not in models:
            continue
        for r in _by_budget(group, FAST):
            match = ddn_match(group, ours=r)
            rows.append({"model": name, "method": r.label, "success %": 100 * r.success.mean(),
                         "median ratio to best peer": _median_to_best_peer(group, r),
                         f"within {CLOSE_ENOUGH}": "yes" if _meets_distortion_target(group, r) else "no",
                         "s / image": r.seconds_per_image,
                         f"DDN within {100 * SPEED_TOLERANCE:g}%": match.label if match else "none",
                         "DDN s / image": match.seconds_per_image if match else math.nan,
                         "speed-up": match.seconds_per_image / r.seconds_per_image if match else math.nan})
    return pd.DataFrame(rows)


def walk_mnist_table(results: Sequence[PeerResult]) -> pd.DataFrame:
    """Per model: the median ratio to the best peer and the gradient evaluations per image of ours and both walks."""
    rows = []
    for name, group in _by_model(results).items():
        found = {m: _one(group, m) for m in (OURS, WALK, WALK_DDN)}
        if not all(found.values()) or not best_peer_exists(group):
            continue
        row = {"model": name}
        row.update({f"{m}: ratio to best peer": _median_to_best_peer(group, r) for m, r in found.items()})
        row.update({f"{m}: gradients / image": r.gradients for m, r in found.items()})
        rows.append(row)
    return pd.DataFrame(rows)


@dataclass
class WalkOnMnist:
    """What `walk_mnist_table` says: the walks against ours, model by model."""

    table: pd.DataFrame

    def _ratios(self, method: str) -> pd.Series:
        return self.table[f"{method}: ratio to best peer"]

    @property
    def farther(self) -> list[str]:
        """Models on which either walk ends more than SPEED_TOLERANCE farther than ours (median ratios)."""
        ours = self._ratios(OURS)
        worse = (self._ratios(WALK) > ours * (1 + SPEED_TOLERANCE)) | (self._ratios(WALK_DDN) > ours * (1 + SPEED_TOLERANCE))
        return self.table["model"][worse].tolist()

    @property
    def closer(self) -> list[str]:
        """Models on which both walks end closer than ours (median ratios, any margin)."""
        ours = self._ratios(OURS)
        better = (self._ratios(WALK) < ours) & (self._ratios(WALK_DDN) < ours)
        return self.table["model"][better].tolist()

    def gradient_factor(self, method: str) -> tuple[float, float]:
        """(lowest, highest) over the models of the walk's gradient evaluations per image / ours'."""
        factor = self.table[f"{method}: gradients / image"] / self.table[f"{OURS}: gradients / image"]
        return float(factor.min()), float(factor.max())


def gradient_change_table(models: Sequence[str] = ("N100-100-10", "AE400-10", "Conv"), images: int = 20,
                          scales: Sequence[float] = (0.001, 0.01, 0.1), seed: int = 0) -> pd.DataFrame:
    """Per model, the median turn of the margin's gradient near the fast attack's results (`gradient_change`).

    On the correctly classified ones of `images` fixed test images, runner-up targets, at each step scale.
    """
    from . import zoo
    from .fast_attack import gradient_change

    rows = []
    for name in models:
        model = zoo.load(name, progress=False)
        _, x, y = attacked_images(model, images, seed)
        found = min_distortion(model, x, y, RULE, method=fast_attack)
        row = {"model": name, "images": len(x)}
        for scale in scales:
            change = gradient_change(model, x, found.x_adv, found.target, scale=scale)
            row[f"gradient change at {scale:g} ‖r‖ (median)"] = float(change.median())
        rows.append(row)
    return pd.DataFrame(rows)


def fast_finding(name: str, group: Sequence[PeerResult]) -> Finding:
    """The book's speed target for the fast attack on one model: at the distortion target, >= 2x faster than DDN."""
    claim = f"{name}: the fast attack is {SPEED_FACTOR:g}x faster than DDN at the same distortion"
    target = (f"the book's target: ours-fast at its smallest budget within {CLOSE_ENOUGH} x the best peer (median), "
              f"≥ {SPEED_FACTOR:g}x faster than DDN at its smallest budget within {100 * SPEED_TOLERANCE:g}% of that")
    chosen = fast_choice(group)
    if chosen is None:
        closest = min(_by_budget(group, FAST), key=lambda r: _median_to_best_peer(group, r))
        return Finding(claim, target, f"closest: {closest.label}, {_median_to_best_peer(group, closest):.4f} x the "
                                      f"best peer, {closest.seconds_per_image:.3g} s/image", False,
                       f"no budget of ours-fast comes within {CLOSE_ENOUGH} x the best peer", key=f"fast-speed:{name}")
    ratio = _median_to_best_peer(group, chosen)
    match = ddn_match(group, ours=chosen)
    if match is None:
        return Finding(claim, target, f"{chosen.label} ({ratio:.4f} x the best peer); no tested DDN budget comes "
                                      f"within {100 * SPEED_TOLERANCE:g}% of its distortion", True,
                       key=f"fast-speed:{name}")
    speedup = match.seconds_per_image / chosen.seconds_per_image
    return Finding(claim, target, f"{chosen.label} ({ratio:.4f} x the best peer) {chosen.seconds_per_image:.3g} "
                                  f"s/image, {match.label} {match.seconds_per_image:.3g} s/image: {speedup:.2f}x",
                   speedup >= SPEED_FACTOR,
                   "" if speedup >= SPEED_FACTOR else f"only {speedup:.2f}x at the distortion target",
                   key=f"fast-speed:{name}")


# ----------------------------------------------------------------------------------------------
# The picture
# ----------------------------------------------------------------------------------------------

COLORS = {OURS: "black", SHARP: "tab:brown", FAST: "tab:olive", WALK: "tab:cyan", WALK_DDN: "deeppink", "DDN": "tab:blue", "C&W": "tab:orange", "BB": "tab:green",
          "FMN": "tab:red", FMN_FIXED: "tab:pink", "FAB": "tab:purple", EXACT: "tab:gray"}
MARKERS = {OURS: "*", SHARP: "p", FAST: "P", WALK: "h", WALK_DDN: "H", "DDN": "o", "C&W": "s", "BB": "D", "FMN": "v", FMN_FIXED: "<", "FAB": "^", EXACT: "X"}


def plot(results: Sequence[PeerResult], models: Sequence[str] | None = None, ceiling: float = 1.10):
    """Per model, each method's median per-image distortion ratio to ours against seconds per image (log).

    Each method is a curve over its step budgets (a point where it has one). Hollow markers: the
    method missed the target on some images (they count as infinitely far); a median above
    `ceiling` is drawn on the top edge with its value; methods that missed more than half the
    targets (median inf) are left out. The legend sits in a panel of its own.
    """
    import matplotlib.pyplot as plt

    groups = _by_model(results)
    models = [m for m in (models or groups) if m in groups]
    columns = 4
    rows = math.ceil((len(models) + 1) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.0 * columns, 2.7 * rows), squeeze=False)
    axes = axes.ravel()
    for ax, name in zip(axes, models):
        group = groups[name]
        ours = _one(group, OURS)
        lowest = 1.0
        for k, method in enumerate(METHODS):
            curve = [r for r in sorted(group, key=lambda r: r.budget) if r.method == method]
            points = [(r.seconds_per_image, float(np.median(_ratio(r, ours))), r.success.all()) for r in curve]
            points = [p for p in points if np.isfinite(p[1])]
            if not points:
                continue
            lowest = min(lowest, *(p[1] for p in points))
            t, d = [p[0] for p in points], [min(p[1], ceiling) for p in points]
            ax.plot(t, d, "-", color=COLORS[method], lw=1, alpha=0.7)
            shown = ""  # the last value written on the top edge, not repeated along a flat curve
            for (ti, ratio, full), di in zip(points, d):
                ax.plot(ti, di, MARKERS[method], color=COLORS[method], ms=10 if method == OURS else 5,
                        markerfacecolor=COLORS[method] if full else "none", zorder=3 if method == OURS else 2)
                if ratio > ceiling and f"{ratio:.2f}" != shown:
                    shown = f"{ratio:.2f}"
                    ax.annotate(f"{ratio:.2f}", (ti, di), textcoords="offset points", ha="center", fontsize=6,
                                xytext=(0, -9 - 7 * (k % 2)), color=COLORS[method])  # alternate: no overlaps
        ax.axhline(1.0, color="black", lw=0.5, ls=":")
        ax.set_ylim(min(0.99, lowest - 0.005), ceiling + 0.005)
        ax.set_xscale("log")
        ax.set_title(name, fontsize=9)
        ax.tick_params(labelsize=7)
        ax.set_xlabel("seconds / image (log)", fontsize=7)
        ax.set_ylabel("distortion / ours (median)", fontsize=7)
    legend = axes[len(models)]
    for method in [m for m in METHODS if any(r.method == m for r in results)]:
        legend.plot([], [], MARKERS[method], color=COLORS[method], ls="-", label=method)
    legend.plot([], [], "o", color="gray", markerfacecolor="none", ls="", label="missed some targets")
    legend.legend(loc="center", fontsize=8, frameon=False)
    for ax in axes[len(models):]:
        ax.axis("off")
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------------------------
# ImageNet: the photos of the natural-images chapter
# ----------------------------------------------------------------------------------------------


def sharp_key(temperature: float, warm_start: bool) -> str:
    """The name of one setting in the temperature validation: '0.01' or '0.01 warm'."""
    return f"{temperature:g}" + (" warm" if warm_start else "")


def sharp_validation(record: dict) -> dict[str, float]:
    """Per setting of bench_sharp_temperature's record: the mean distortion over its photos and both targets."""
    return {k: float(np.mean([np.mean(v[rule]["distortion"]) for rule in ("ostrich", "runner-up")]))
            for k, v in record["results"].items()}


def polish_start_table(record: dict, sharp_record: dict) -> pd.DataFrame:
    """bench_polish_start's record beside ours-sharp's own search on the same photos (bench_sharp_temperature's).

    Per row: each photo's distortion toward ostrich, gradient evaluations per image, and the median over the
    photos of the ratio to the best row per photo (so 1.000 is the closest on every photo).
    """
    if record.get("photos") != sharp_record.get("photos"):
        raise ValueError(f"the two records cover other photos: {record.get('photos')} vs {sharp_record.get('photos')}")
    from . import attack

    chosen = sharp_key(attack.SHARP_TEMPERATURE, SHARP_OPTIONS["warm_start"])
    rows = {f"{SHARP} (its own c search)": sharp_record["results"][chosen]["ostrich"], **record["results"]}
    dist = np.array([[math.inf if d is None else d for d in r["distortion"]] for r in rows.values()])
    best = dist.min(0)
    frame = pd.DataFrame(dist, index=list(rows), columns=record["photos"])
    frame["gradients / image"] = [round(r["gradients"]) for r in rows.values()]
    frame["median ratio to the best row"] = np.round(np.median(dist / best, 1), 3)
    return frame.rename_axis("start, then").reset_index()


@dataclass
class PolishStop:
    """Why the polish from DDN's start stops where it does: `polish_start_table`'s rows, read together.

    The first six are the table's median ratios to the best row, for the prose; the comparisons (the properties)
    are made photo by photo, then the median taken, so that no comparison sets one photo's number against another's.
    """

    polished: float  # the shortest polish from the start
    longest: float  # the longest polish, with its stopping tolerances
    untolerant: float  # the longest polish without stopping tolerances
    untolerant_float64: float  # the same in float64
    walked: float  # Brendel-Bethge from the same start
    walked_polished: float  # the shortest polish from Brendel-Bethge's end
    running_on: float  # median over the photos of (the closer untolerant polish) / (the longest polish)
    in_float64: float  # median over the photos of float64 / float32, both without tolerances
    gap_closed: float  # median over the photos of the share of (longest - Brendel-Bethge) that float32 running on closes
    held: float  # median over the photos of (the closer untolerant polish) / Brendel-Bethge

    @property
    def stopping_rule_matters(self) -> bool:
        """Whether the longest polish, without tolerances or in float64, comes closer by more than SPEED_TOLERANCE."""
        return self.running_on < 1 - SPEED_TOLERANCE

    @property
    def precision_matters(self) -> bool:
        """Whether float64 comes closer than float32, both without tolerances, by more than SPEED_TOLERANCE."""
        return self.in_float64 < 1 - SPEED_TOLERANCE

    @property
    def gap_closed_by_running_on(self) -> float:
        """The share of the gap from the longest polish down to Brendel-Bethge that running on without tolerances
        (float32, as the polish runs) closes: the median over the photos."""
        return self.gap_closed

    @property
    def another_basin(self) -> bool:
        """Whether the polish from Brendel-Bethge's end ends closer than BB and every polish from DDN's start."""
        return self.walked_polished < min(self.walked, self.polished, self.longest, self.untolerant,
                                          self.untolerant_float64)

    @property
    def start_holds_it(self) -> bool:
        """Whether the polish from DDN's start, even without tolerances, stays farther than BB by more than SPEED_TOLERANCE."""
        return self.held > 1 + SPEED_TOLERANCE


def polish_stop(table: pd.DataFrame, start: str = f"{BB_START[0]}-{BB_START[1]}") -> PolishStop:
    """The rows of `polish_start_table` (bench_polish_start's labels) that say why the polish stops; KeyError if absent."""
    rows = table.set_index("start, then")
    ratio = rows["median ratio to the best row"]
    photos = [c for c in rows.columns if c not in ("gradients / image", "median ratio to the best row")]
    polish_rows = sorted((r for r in ratio.index if r.startswith(f"{start} + polish-") and "," not in r),
                         key=lambda r: int(r.rsplit("-", 1)[1]))
    first, longest = polish_rows[0], polish_rows[-1]
    walked = f"{start} + BB-100"
    untolerant, untolerant64 = f"{longest}, no stopping tolerances", f"{longest}, no stopping tolerances, float64"
    d = {label: rows.loc[label, photos].to_numpy(dtype=float) for label in (longest, walked, untolerant, untolerant64)}
    closer = np.minimum(d[untolerant], d[untolerant64])
    return PolishStop(float(ratio[first]), float(ratio[longest]), float(ratio[untolerant]), float(ratio[untolerant64]),
                      float(ratio[walked]), float(ratio[f"{walked} + polish-{first.rsplit('-', 1)[1]}"]),
                      float(np.median(closer / d[longest])), float(np.median(d[untolerant64] / d[untolerant])),
                      float(np.median((d[longest] - d[untolerant]) / (d[longest] - d[walked]))),
                      float(np.median(closer / d[walked])))


ALIGNMENT_SLACK = 0.05  # cosines within this of each other count as lined up equally well
SEGMENT_POINTS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)  # where `segment_margins` samples between two ends


@torch.no_grad()
def segment_margins(model: nn.Module, a: Tensor, b: Tensor, target: Tensor,
                    points: Sequence[float] = SEGMENT_POINTS) -> np.ndarray:
    """The target's logit margin at (1 - s) a + s b for each s in points, per image [N, len(points)].

    Positive: classified as the target; a segment with a margin <= 0 leaves the target's region between a and b.
    """
    if not points or not all(0 < s < 1 for s in points):
        raise ValueError(f"points must be a non-empty sequence in (0, 1), got {points!r}")
    return np.stack([logit_margin(model((1 - s) * a + s * b), target).double().cpu().numpy() for s in points], 1)


@dataclass
class Pockets:
    """Where the polish from DDN's start ends against Brendel-Bethge's end: one stretch of the target's region, or two."""

    separation: float  # median over the photos of ||polish's end - BB's end|| / ||BB's r||
    lowest_margin: float  # median over the photos of the lowest target margin on the segment between them (logits)
    left: int  # photos whose segment leaves the target's region somewhere
    photos: int
    alignment_polished: float  # median cos(r, margin gradient) at the polish's ends: 1 at a minimum along the boundary
    alignment_walked: float  # the same at Brendel-Bethge's ends
    travel_polished: float  # median over the photos of ||polish's end - DDN's start|| / ||BB's r||
    travel_walked: float  # the same for Brendel-Bethge's end
    walked_farther: int  # photos on which Brendel-Bethge's end lies farther from DDN's start than the polish's

    @property
    def walks_away(self) -> bool:
        """Whether on every photo Brendel-Bethge moves farther from DDN's start than the polish does."""
        return self.walked_farther == self.photos

    @property
    def equally_stationary(self) -> bool:
        """Whether the polish's ends line up with the margin's gradient within ALIGNMENT_SLACK of Brendel-Bethge's."""
        return abs(self.alignment_polished - self.alignment_walked) <= ALIGNMENT_SLACK

    @property
    def separate(self) -> bool:
        """Whether on every photo the straight segment between the two ends leaves the target's region."""
        return self.left == self.photos


def pockets(record: dict) -> Pockets:
    """bench_polish_start's "basins" entry read as a `Pockets`; KeyError naming the entry if the record lacks it."""
    if "basins" not in record:
        raise KeyError("the record has no 'basins' entry: run benchmarks/bench_polish_start.py")
    basins = record["basins"]
    margins = np.array(basins["margins"], dtype=float)
    polished, walked = basins["between"]
    if "travel" not in basins:
        raise KeyError("the 'basins' entry has no 'travel': rerun benchmarks/bench_polish_start.py")
    travel = {k: np.array(basins["travel"][k], dtype=float) for k in (polished, walked)}
    return Pockets(float(np.median(basins["separation"])), float(np.median(margins.min(1))),
                   int((margins <= 0).any(1).sum()), len(margins),
                   float(np.median(basins["alignment"][polished])), float(np.median(basins["alignment"][walked])),
                   float(np.median(travel[polished])), float(np.median(travel[walked])),
                   int((travel[walked] > travel[polished]).sum()))


WALKED = f"{BB_START[0]}-{BB_START[1]} + BB-100"  # polish_start.json's row the walks are measured against
PROBABILITY_WALK = "log-p linearised + walk"  # polish_walk.json's row from the start on log p_target
BOTH_WALK = "both linearised starts + walk"  # and from both own starts, the closer end kept (ours-walk, start 1)


LONG_WALK = "gradient start + walk, run on"  # polish_walk.json's row of the chosen length's walk over LONG_WALK_RUNS runs
LONG_WALK_RUNS = 61  # and walk_validation.json's runs at the chosen length, where ours-walk's budget is chosen
SHORT_RUNS = 31  # walk_validation.json: the runs of the walks at the lengths not chosen
VALIDATION_PEERS = ((FMN_FIXED, 300),)  # walk_validation.json: peers run on the crops beside Brendel-Bethge (WALKED)


REORDER_SHIFTS = (1, 2)  # polish_walk.json: the chosen walk again with the photos rolled by these many places
SINGLE_WALK = "gradient start + walk, one photo at a time"  # and in batches of one photo


def reordered_walk_label(shift: int) -> str:
    """polish_walk.json's row of the chosen gradient start's walk with the photos rolled by `shift` in the batch."""
    return f"gradient start + walk, photos rolled by {shift}"


def gradient_walk_label(length: float) -> str:
    """polish_walk.json's row of the walk from `fast_attack.gradient_start` with steps of this L2 length."""
    return f"gradient start ({length:g}) + walk"


def _walk_reference(start_record: dict) -> np.ndarray:
    if WALKED not in start_record.get("results", {}):
        raise KeyError(f"polish_start.json has no {WALKED!r} row: run benchmarks/bench_polish_start.py")
    return np.array(start_record["results"][WALKED]["distortion"], dtype=float)


def walk_table(record: dict, start_record: dict) -> pd.DataFrame:
    """bench_polish_walk's rows beside Brendel-Bethge from DDN's start: each photo's ratio to it, their median,
    gradient evaluations per image at the end (the start's included) and the number of runs."""
    if start_record.get("photos") != record.get("photos"):
        raise ValueError("polish_walk.json and polish_start.json are on other photos: rerun both benchmarks")
    reference = _walk_reference(start_record)
    rows = [{"start, then": WALKED, **{photo: 1.0 for photo in record["photos"]}, "median ratio to Brendel-Bethge": 1.0,
             "gradients / image": float(start_record["results"][WALKED]["gradients"]), "runs": math.nan}]
    for label, entry in record["results"].items():
        ratio = np.array(entry["distortion"], dtype=float) / reference
        rows.append({"start, then": label, **dict(zip(record["photos"], ratio.tolist())),
                     "median ratio to Brendel-Bethge": float(np.median(ratio)),
                     "gradients / image": float(entry["trace"][-1]["gradients"]), "runs": len(entry["trace"])})
    return pd.DataFrame(rows)


@dataclass
class WalkVerdict:
    """What the walk of polishes does on the validation photos, each a median ratio to Brendel-Bethge."""

    from_ddn: float  # the walk from DDN-100's result
    from_ddn_unpushed: float  # the same runs restarted from their own ends (step 0)
    from_own: float  # the walk from the book's linearised start
    from_own_unpushed: float
    own_photos_far: int  # photos on which the walk from the book's own start ends farther than CLOSE_ENOUGH x BB's
    from_probability: float  # the walk from the linearised start on log p_target
    from_both: float  # the closer of the walks from both own starts, per photo
    starts_differ: int  # photos on which the two own starts' walks end more than SPEED_TOLERANCE apart
    batch_spread: float  # largest |both / the closer of the two single rows - 1| over the photos (one batch of 2N)
    from_gradient: dict[float, float]  # the walk from `fast_attack.gradient_start`, by the L2 length of its steps
    chosen_mean: float  # the mean over the photos (not the median) of the walk at `fast_attack.GRADIENT_LENGTH`
    closest_length: tuple[float, float]  # per photo the closest of the lengths' walks: (median, mean) over the photos
    # the rounding checks, run at `fast_attack.GRADIENT_LENGTH` and compared with its row:
    reorder_spread: float  # largest |the walk with the photos rolled in the batch / in order - 1| over photos, orders
    single_spread: float  # largest |the walk one photo at a time / in the batch - 1| over the photos

    @property
    def chosen_length(self) -> float:
        """The step length whose walk ends closest (median over the photos): the one ours-walk uses."""
        return min(self.from_gradient, key=self.from_gradient.get)

    @property
    def gradient_reaches_walker(self) -> bool:
        """Whether the walk from the gradient start at the chosen length ends within CLOSE_ENOUGH of Brendel-Bethge."""
        return self.from_gradient[self.chosen_length] <= CLOSE_ENOUGH

    @property
    def push_matters(self) -> bool:
        """Whether restarting past each end ends more than SPEED_TOLERANCE closer than restarting at it, from both starts."""
        return (self.from_ddn_unpushed - self.from_ddn > SPEED_TOLERANCE
                and self.from_own_unpushed - self.from_own > SPEED_TOLERANCE)

    @property
    def reaches_walker(self) -> bool:
        """Whether the walk from DDN's start ends within CLOSE_ENOUGH of Brendel-Bethge from the same start."""
        return self.from_ddn <= CLOSE_ENOUGH

    @property
    def own_reaches_walker(self) -> bool:
        """Whether the walk from the book's own start does."""
        return self.from_own <= CLOSE_ENOUGH

    @property
    def both_reaches_walker(self) -> bool:
        """Whether the closer of the walks from both own starts does."""
        return self.from_both <= CLOSE_ENOUGH


def walk_verdict(table: pd.DataFrame) -> WalkVerdict:
    """The walks of `walk_table` read as a `WalkVerdict`."""
    from .fast_attack import GRADIENT_LENGTH, GRADIENT_LENGTHS

    rows = table.set_index("start, then")
    needed = ([gradient_walk_label(length) for length in GRADIENT_LENGTHS] + [reordered_walk_label(k) for k in REORDER_SHIFTS]
              + [SINGLE_WALK])
    missing = [label for label in needed if label not in rows.index]
    if missing:
        raise KeyError(f"polish_walk.json has no rows {missing}: run benchmarks/bench_polish_walk.py")
    ratio = rows["median ratio to Brendel-Bethge"]
    photos = [c for c in rows.columns if c not in ("median ratio to Brendel-Bethge", "gradients / image", "runs")]
    ddn = f"{BB_START[0]}-{BB_START[1]} + walk"
    own = rows.loc["linearised + walk", photos].to_numpy(dtype=float)
    other = rows.loc[PROBABILITY_WALK, photos].to_numpy(dtype=float)
    differ = int((np.maximum(own, other) / np.minimum(own, other) > 1 + SPEED_TOLERANCE).sum())
    both = rows.loc[BOTH_WALK, photos].to_numpy(dtype=float)
    from_gradient = {length: float(ratio[gradient_walk_label(length)]) for length in GRADIENT_LENGTHS}
    closest = rows.loc[[gradient_walk_label(length) for length in GRADIENT_LENGTHS], photos].astype(float).min().to_numpy()
    in_batch = rows.loc[gradient_walk_label(GRADIENT_LENGTH), photos].to_numpy(dtype=float)  # the length in use
    spread = lambda label: float(np.abs(rows.loc[label, photos].to_numpy(dtype=float) / in_batch - 1).max())  # noqa: E731
    return WalkVerdict(float(ratio[ddn]), float(ratio[f"{ddn}, step 0"]), float(ratio["linearised + walk"]),
                       float(ratio["linearised + walk, step 0"]), int((own > CLOSE_ENOUGH).sum()),
                       float(ratio[PROBABILITY_WALK]), float(ratio[BOTH_WALK]), differ,
                       float(np.abs(both / np.minimum(own, other) - 1).max()),
                       from_gradient, float(in_batch.mean()),
                       (float(np.median(closest)), float(closest.mean())),
                       max(spread(reordered_walk_label(k)) for k in REORDER_SHIFTS), spread(SINGLE_WALK))


def long_walk_medians(record: dict, start_record: dict) -> np.ndarray:
    """After each run of the LONG_WALK row: the median over the photos of distortion / Brendel-Bethge's (inf: none yet)."""
    if LONG_WALK not in record.get("results", {}):
        raise KeyError(f"polish_walk.json has no {LONG_WALK!r} row: run benchmarks/bench_polish_walk.py")
    reference = _walk_reference(start_record)
    trace = record["results"][LONG_WALK]["trace"]
    return np.array([np.median([math.inf if d is None else d / r for d, r in zip(t["distortion"], reference)])
                     for t in trace])


def walk_runs_needed(medians: np.ndarray, tolerance: float = SPEED_TOLERANCE) -> int:
    """The fewest runs after which the median is within `tolerance` of where the whole walk ends: ours-walk's budget."""
    medians = np.asarray(medians, dtype=float)
    if medians.ndim != 1 or len(medians) == 0 or not np.isfinite(medians[-1]):
        raise ValueError("medians must be a non-empty 1-d trace whose last run succeeded on most photos")
    return int(np.flatnonzero(medians <= (1 + tolerance) * medians[-1])[0]) + 1


@dataclass
class WalkValidation:
    """ours-walk from the gradient start on the validation photos' crops (walk_validation.json), one crop at a time."""

    crops: list[str]
    ratios: dict[float, np.ndarray]  # by step length: [runs, crops], each crop's closest success so far / Brendel-Bethge's
    gradients: dict[float, np.ndarray]  # by step length: [runs, crops], gradient evaluations spent by then (start included)
    peer_ratios: dict[str, np.ndarray] = field(default_factory=dict)  # VALIDATION_PEERS by label: [crops], / Brendel-Bethge's

    def to_best_peer(self, length: float) -> np.ndarray:
        """[runs, crops]: the walk at `length` against the closest of Brendel-Bethge and the validation peers per crop,
        as the test photos are judged (against the best peer)."""
        best = np.min([np.ones(len(self.crops)), *self.peer_ratios.values()], axis=0)
        return self.ratios[length] / best

    def draws(self, photos: int) -> np.ndarray:
        """Every way of choosing `photos` of the crops: the median of the chosen crops' ratios to the best peer at the
        end of the chosen length's walk. How the verdict on that many test photos may fall, if they were like these."""
        from itertools import combinations

        from .fast_attack import GRADIENT_LENGTH

        if not 0 < photos <= len(self.crops):
            raise ValueError(f"photos must be between 1 and the {len(self.crops)} crops, got {photos}")
        end = self.to_best_peer(GRADIENT_LENGTH)[-1]
        return np.array([np.median(end[list(chosen)]) for chosen in combinations(range(len(self.crops)), photos)])

    def medians(self, length: float) -> np.ndarray:
        """After each run of the walk at `length`: the median over the crops of the ratio to Brendel-Bethge."""
        return np.median(self.ratios[length], axis=1)

    @property
    def runs_needed(self) -> int:
        """`walk_runs_needed` on the chosen length's long walk: ours-walk's budget of runs on ImageNet."""
        from .fast_attack import GRADIENT_LENGTH

        return walk_runs_needed(self.medians(GRADIENT_LENGTH))

    @property
    def compared_runs(self) -> int:
        """The runs that every length's walk made: where the lengths are compared."""
        return min(len(r) for r in self.ratios.values())

    def at_runs(self, runs: int) -> dict[float, float]:
        """Each length's median ratio after `runs` runs."""
        return {length: float(self.medians(length)[runs - 1]) for length in self.ratios}

    @property
    def closest_length(self) -> float:
        """The length whose walk ends closest (median) after `compared_runs` runs."""
        medians = self.at_runs(self.compared_runs)
        return min(medians, key=medians.get)

    def closer_crops(self, length: float, other: float) -> int:
        """On how many crops the walk at `length` ends closer than the walk at `other`, after `compared_runs` runs."""
        k = self.compared_runs - 1
        return int((self.ratios[length][k] < self.ratios[other][k]).sum())

    @property
    def length_settled(self) -> bool:
        """Whether no length beats the chosen one both in the median (by more than SPEED_TOLERANCE) and crop by crop
        (on more than half the crops): a change must show in both, since rounding alone moves a dozen crops' median."""
        from .fast_attack import GRADIENT_LENGTH

        medians = self.at_runs(self.compared_runs)
        return not any(medians[length] < medians[GRADIENT_LENGTH] / (1 + SPEED_TOLERANCE)
                       and 2 * self.closer_crops(length, GRADIENT_LENGTH) > len(self.crops) for length in medians)

    def means(self, runs: int) -> dict[float, float]:
        """Each length's mean ratio over the crops after `runs` runs."""
        return {length: float(r[runs - 1].mean()) for length, r in self.ratios.items()}

    @property
    def multi_runs(self) -> int:
        """Runs per length of a multi-start (every length's walk, the closest end kept per crop) that costs about as
        many runs as the chosen length's long walk."""
        return min(self.compared_runs, max(len(r) for r in self.ratios.values()) // len(self.ratios))

    def multi_start(self, runs: int) -> np.ndarray:
        """Per crop the closest end of every length's walk after `runs` runs each."""
        return np.min([r[runs - 1] for r in self.ratios.values()], axis=0)

    def share_met(self, photos: int) -> float:
        """The fraction of `draws(photos)` within CLOSE_ENOUGH of the best peer: how often that many photos like these
        crops would pass the book's distortion target."""
        return float((self.draws(photos) <= CLOSE_ENOUGH).mean())

    @property
    def equal_cost(self) -> tuple[float, float, float, float]:
        """(multi-start median, its gradients / image, the chosen length's median after as many gradients, those
        gradients): a few short walks against one long walk at the same cost."""
        from .fast_attack import GRADIENT_LENGTH

        k = self.multi_runs
        spent = float(np.mean(sum(g[k - 1] for g in self.gradients.values())))
        long = self.gradients[GRADIENT_LENGTH].mean(axis=1)
        r = int(min(np.searchsorted(long, spent), len(long) - 1))
        return float(np.median(self.multi_start(k))), spent, float(self.medians(GRADIENT_LENGTH)[r]), float(long[r])


def walk_validation(record: dict) -> WalkValidation:
    """bench_walk_validation.py's record read as a `WalkValidation` (lengths with a walk on every crop only)."""
    results = record.get("results", {})
    if WALKED not in results:
        raise KeyError(f"walk_validation.json has no {WALKED!r} row: run benchmarks/bench_walk_validation.py")
    crops = record["photos"]
    reference = np.array(results[WALKED]["distortion"], dtype=float)
    ratios, gradients = {}, {}
    for entry in results.values():
        images = entry.get("images", {})
        if "length" not in entry or any(c not in images for c in crops):
            continue
        dist = np.array([[math.inf if d is None else d for d in images[c]["distortion"]] for c in crops], dtype=float)
        ratios[entry["length"]] = dist.T / reference
        gradients[entry["length"]] = np.array([images[c]["gradients"] for c in crops], dtype=float).T
    from .fast_attack import GRADIENT_LENGTH

    if GRADIENT_LENGTH not in ratios:
        raise KeyError(f"walk_validation.json has no walk at the chosen length {GRADIENT_LENGTH} on every crop")
    if any(len(r) > len(ratios[GRADIENT_LENGTH]) for r in ratios.values()):  # equal_cost and multi_runs assume it
        raise ValueError(f"walk_validation.json: the walk at the chosen length {GRADIENT_LENGTH} must be the longest, "
                         f"got runs {({length: len(r) for length, r in ratios.items()})}")
    peer_ratios = {}
    for label in (f"{method}-{budget}" for method, budget in VALIDATION_PEERS):
        entry = results.get(label)
        if entry is not None:  # a peer's failure on a crop (None) leaves Brendel-Bethge that crop's best peer
            peer_ratios[label] = np.array([math.inf if d is None else d for d in entry["distortion"]],
                                          dtype=float) / reference
    return WalkValidation(crops, dict(sorted(ratios.items())), dict(sorted(gradients.items())), peer_ratios)


@dataclass
class OstrichMiss:
    """ours-walk toward ostrich on the test photos, set against its draws on the validation crops: a bad draw of
    pockets, or a peer closer on the test photos than on the crops, or the walk itself?"""

    draws: np.ndarray  # `WalkValidation.draws` of as many crops as there are test photos
    test_ratios: np.ndarray  # per test photo, ours-walk's ratio to the best peer
    test_ratios_bb: np.ndarray  # per test photo, ours-walk's ratio to Brendel-Bethge alone (the crops' reference)
    closest_peer: dict[str, int]  # by label: test photos on which each peer is the best peer (those on none left out)
    crops_peer_closer: int  # crops on which a validation peer ends closer than Brendel-Bethge
    best_labels: list[str] = field(default_factory=list)  # per test photo, the best peer's label
    crops_peers: list[str] = field(default_factory=list)  # the validation peers' labels (run on the crops)

    @property
    def test_median(self) -> float:
        """ours-walk's median ratio to the best peer on the test photos."""
        return float(np.median(self.test_ratios))

    @property
    def peer_gain(self) -> np.ndarray:
        """Per test photo, the best peer's distortion / Brendel-Bethge's (1 where Brendel-Bethge is the best)."""
        return self.test_ratios_bb / self.test_ratios

    @property
    def largest_gain(self) -> int:
        """The test photo where the best peer gains most on Brendel-Bethge."""
        return int(np.argmin(self.peer_gain))

    @property
    def gain_peer(self) -> str:
        """The best peer on that photo."""
        return self.best_labels[self.largest_gain]

    @property
    def gain_peer_on_crops(self) -> bool:
        """Whether that peer ran on the crops (so the crops say how often it beats Brendel-Bethge)."""
        return self.gain_peer in self.crops_peers

    @property
    def gap_photo(self) -> int | None:
        """The test photo where another peer gains most on Brendel-Bethge, if judging that photo alone against
        Brendel-Bethge brings the median within CLOSE_ENOUGH (so the miss comes from it); else None."""
        i = self.largest_gain
        swapped = self.test_ratios.copy()
        swapped[i] = self.test_ratios_bb[i]
        return i if self.peer_gain[i] < 1 and np.median(swapped) <= CLOSE_ENOUGH else None

    @property
    def test_median_bb(self) -> float:
        """ours-walk's median ratio to Brendel-Bethge alone on the test photos."""
        return float(np.median(self.test_ratios_bb))

    @property
    def share_met(self) -> float:
        """The fraction of the crops' draws within CLOSE_ENOUGH of the best peer."""
        return float((self.draws <= CLOSE_ENOUGH).mean())

    @property
    def beyond_draws(self) -> bool:
        """Whether the test photos' median is above every draw of the crops."""
        return bool(self.test_median > self.draws.max())

    @property
    def cause(self) -> str:
        """'draw' (the test median lies among the crops' draws), 'peer' (above them all, but within CLOSE_ENOUGH of
        Brendel-Bethge alone: another peer is closer on the test photos) or 'walk' (above them, and of BB too)."""
        if not self.beyond_draws:
            return "draw"
        return "peer" if self.test_median_bb <= CLOSE_ENOUGH else "walk"


def ostrich_miss(validation: WalkValidation, run: PeerRun) -> OstrichMiss:
    """`OstrichMiss` from the crops (walk_validation.json) and the committed ostrich comparison of the test photos."""
    if run.rule != "ostrich":
        raise ValueError(f"ostrich_miss reads the ostrich comparison, got rule {run.rule!r}")
    walk, bb = _one(run.results, WALK), _one(run.results, "BB")
    if walk is None or bb is None:
        raise ValueError("the ostrich comparison lacks ours-walk or Brendel-Bethge")
    best = best_peer(run.results)
    peer_results = [r for r in run.results if r.method not in OWN]
    closest = {r.label: int((r.distortion <= best).sum()) for r in peer_results}
    closest = {label: n for label, n in sorted(closest.items(), key=lambda kv: -kv[1]) if n}
    best_labels = [min(peer_results, key=lambda r: r.distortion[i]).label for i in range(len(run.images))]
    return OstrichMiss(validation.draws(len(run.images)), ratio_to_best_peer(run.results, walk),
                       walk.distortion / bb.distortion, closest,
                       int(sum((r < 1).sum() for r in validation.peer_ratios.values())), best_labels,
                       list(validation.peer_ratios))


def repeats_single_walk(record: dict, walk_record: dict) -> bool:
    """Whether the centre crops' walks at the chosen length (walk_validation.json) repeat polish_walk.json's walk one
    photo at a time to the digit, run by run: the same photos walked alone give the same ends in both benchmarks."""
    from .fast_attack import GRADIENT_LENGTH

    trace = walk_record["results"][SINGLE_WALK]["trace"]
    images = record["results"][gradient_walk_label(GRADIENT_LENGTH)]["images"]
    return all(images[photo]["distortion"][:len(trace)] == [t["distortion"][j] for t in trace]
               for j, photo in enumerate(walk_record["photos"]))


def _mark_above(ax, gradients, values, ceiling: float, color, drawn: list) -> None:
    """Finite points above the ceiling as hollow triangles on the top edge; `drawn` records that some were (for the
    legend entry `_walk_axes` then adds)."""
    gradients, values = np.asarray(gradients, dtype=float), np.asarray(values, dtype=float)
    above = np.isfinite(values) & (values > ceiling)
    if above.any():
        ax.plot(gradients[above], np.full(above.sum(), ceiling), "^", mfc="none", color=color, ms=6, ls="none",
                clip_on=False)
        drawn.append(True)


def _walk_axes(ax, lowest: float, ceiling: float, ylabel: str, marked: bool = False) -> None:
    """The walk figures' frame: Brendel-Bethge's distortion (1) and the target (CLOSE_ENOUGH) as lines, labels, legend
    (with an entry for the triangles of `_mark_above` if `marked`)."""
    if marked:
        ax.plot([], [], "^", mfc="none", color="0.4", ms=6, ls="none", label="a median above the top, drawn on its edge")
    ax.axhline(1.0, color="black", lw=0.5, ls=":")
    ax.axhline(CLOSE_ENOUGH, color="gray", lw=0.5, ls="--")
    ax.set_ylim(lowest, ceiling)
    ax.set_xlabel("gradient evaluations / image", fontsize=9)
    ax.set_ylabel(ylabel, fontsize=9)
    ax.tick_params(labelsize=8)
    ax.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))


def walk_validation_plot(validation: WalkValidation, ceiling: float = 1.3):
    """Median over the crops of distortion / Brendel-Bethge's after each run of each length's walk, against gradient
    evaluations per image; the chosen length's crops in thin grey, and the multi-start at equal cost as one point. A
    median above `ceiling` is a hollow triangle on the top edge."""
    import matplotlib.pyplot as plt

    from .fast_attack import GRADIENT_LENGTH

    fig, ax = plt.subplots(figsize=(7.6, 3.8), layout="constrained")
    shades = plt.get_cmap("Oranges")(np.linspace(0.35, 0.8, len(validation.ratios)))
    chosen = validation.ratios[GRADIENT_LENGTH]
    spent = validation.gradients[GRADIENT_LENGTH]
    for j in range(chosen.shape[1]):  # each crop of the chosen length's walk
        keep = np.isfinite(chosen[:, j]) & (chosen[:, j] <= ceiling)
        ax.plot(spent[keep, j], chosen[keep, j], color="0.8", lw=0.6, label="one crop (ℓ = %g)" % GRADIENT_LENGTH
                if j == 0 else None)
    lowest = min(0.97, float(chosen[np.isfinite(chosen)].min()) - 0.01)  # every crop in view
    drawn: list = []
    for (length, ratios), shade in zip(validation.ratios.items(), shades):
        medians, gradients = np.median(ratios, axis=1), validation.gradients[length].mean(axis=1)
        keep = np.isfinite(medians) & (medians <= ceiling)
        lowest = min([lowest] + list(medians[keep] - 0.01))
        color = "tab:red" if length == GRADIENT_LENGTH else shade
        ax.plot(gradients[keep], medians[keep], "-", marker=".", ms=4, color=color,
                lw=2 if length == GRADIENT_LENGTH else 1, label=f"ℓ = {length:g} (median)")
        _mark_above(ax, gradients, medians, ceiling, color, drawn)
    multi, cost, _, _ = validation.equal_cost
    ax.plot(cost, multi, "*", color="black", ms=10, ls="none",
            label=f"closest of the {len(validation.ratios)} lengths' walks, {validation.multi_runs} runs each (median)")
    _walk_axes(ax, lowest, ceiling, "distortion / Brendel-Bethge's", marked=bool(drawn))
    ax.set_title(f"The walk from the gradient start on {len(validation.crops)} validation crops, toward ostrich", fontsize=9)
    return fig


def walk_plot(record: dict, start_record: dict, ceiling: float = 1.5):
    """Median distortion / Brendel-Bethge's after each run of every walk but the rounding checks (reordered, one photo
    at a time), against gradient evaluations per image; a median above `ceiling` as a hollow triangle on the top edge."""
    import matplotlib.pyplot as plt

    from .fast_attack import GRADIENT_LENGTHS

    reference = _walk_reference(start_record)
    fig, ax = plt.subplots(figsize=(7.6, 3.8), layout="constrained")
    styles = {"linearised": "tab:brown", BB_START[0]: "tab:blue", PROBABILITY_WALK: "tab:purple", BOTH_WALK: "tab:cyan",
              LONG_WALK: "tab:red"}
    shades = plt.get_cmap("Oranges")(np.linspace(0.35, 0.8, len(GRADIENT_LENGTHS)))
    styles.update({gradient_walk_label(length): shade for length, shade in zip(GRADIENT_LENGTHS, shades)})
    controls = {reordered_walk_label(shift) for shift in REORDER_SHIFTS} | {SINGLE_WALK}  # rounding checks: the table's
    lowest, drawn = 0.97, []
    for label, entry in record["results"].items():
        if label in controls:
            continue
        points = [(t["gradients"], float(np.median(np.array(t["distortion"], dtype=float) / reference)))
                  for t in entry["trace"]]
        color = styles.get(label, styles.get(label.split("-")[0].split(" ")[0]))
        _mark_above(ax, *zip(*points), ceiling, color, drawn)
        points = [(g, v) for g, v in points if np.isfinite(v) and v <= ceiling]
        lowest = min([lowest] + [v - 0.01 for _, v in points])
        ax.plot(*zip(*points), "-" if "step 0" not in label else "--", color=color,
                marker="." if "step 0" not in label else None, ms=4, lw=2 if label == LONG_WALK else 1, label=label)
    bb = start_record["results"][WALKED]
    ax.plot(bb["gradients"], 1.0, MARKERS["BB"], color=COLORS["BB"], ms=7, label=WALKED, ls="none")
    _walk_axes(ax, lowest, ceiling, "distortion / Brendel-Bethge's (median)", marked=bool(drawn))
    return fig


def improving_runs(result: PeerResult) -> np.ndarray:
    """Per image, how many runs of ours' c search (`PeerResult.trace`) brought a closer success than those before.

    The first success counts as one; the refinement, the trace's last point, does not count.
    """
    steps = np.array([d for _, d in result.trace[:-1]])  # [runs, images]; inf until a run succeeds
    before = np.vstack([np.full(steps.shape[1], np.inf), steps[:-1]])
    return (steps < before).sum(0)


def load_imagenet(network: str = IMAGENET_NETWORK, rules: Sequence[str] = ("ostrich", "runner-up"),
                  folder: Path = IMAGENET_DIR) -> list[PeerRun]:
    """The committed ImageNet comparison of `network`, one run per target rule."""
    return [load(network, folder, rule) for rule in rules]


def imagenet_table(run: PeerRun) -> pd.DataFrame:
    """One rule's methods on the photos: success, mean distortion, median ratio to the best peer, passes, seconds."""
    peered = best_peer_exists(run.results)
    rows = []
    for r in sorted(run.results, key=lambda r: (list(METHODS).index(r.method), r.budget)):
        rows.append({"target": run.rule, "method": r.label, "success %": 100 * r.success.mean(),
                     "mean distortion": r.distortion[r.success].mean() if r.success.any() else math.nan,
                     "median ratio to best peer": _median_to_best_peer(run.results, r) if peered else math.nan,
                     "gradients / image": r.gradients, "forward passes / image": r.forwards,
                     "s / image": r.seconds_per_image})
    return pd.DataFrame(rows)


def _gradient_match(group: Sequence[PeerResult], result: PeerResult) -> tuple[bool, str]:
    """Whether `result` costs no more gradient evaluations than DDN at its smallest budget within SPEED_TOLERANCE."""
    match = ddn_match(group, ours=result)
    if match is None:
        return True, f"no tested DDN budget comes within {100 * SPEED_TOLERANCE:g}% of its mean distortion"
    fewer = result.gradients <= match.gradients
    return fewer, f"{result.gradients:.0f} gradients / image, {match.label} {match.gradients:.0f}"


def imagenet_findings(runs: Sequence[PeerRun]) -> list[Finding]:
    """The targets of the ImageNet comparison, for ours and ours-fast: distortion near the best peer, and passes."""
    found = []
    for method in (OURS, SHARP, FAST, WALK, WALK_DDN):
        if not all(_one(run.results, method) and best_peer_exists(run.results) for run in runs):
            continue
        ratios = {run.rule: _median_to_best_peer(run.results, _one(run.results, method)) for run in runs}
        network = runs[0].model
        found.append(Finding(
            f"{network}: {method} finds perturbations as small as the best of today's minimum-norm attacks",
            f"ours ≤ {CLOSE_ENOUGH} × the best peer (median per photo), toward each target",
            ", ".join(f"{rule}: {v:.4f}" for rule, v in ratios.items()),
            all(v <= CLOSE_ENOUGH for v in ratios.values()) and all(_one(r.results, method).success.all() for r in runs),
            "" if all(v <= CLOSE_ENOUGH for v in ratios.values()) else
            "above the target toward " + ", ".join(f"{k} ({v:.4f})" for k, v in ratios.items() if v > CLOSE_ENOUGH),
            key=f"imagenet-vs-peers:{network}/{method}"))
        passes = {run.rule: _gradient_match(run.results, _one(run.results, method)) for run in runs}
        missed = [rule for rule, (ok, _) in passes.items() if not ok]
        found.append(Finding(
            f"{network}: {method} needs no more gradient evaluations than DDN at the same distortion",
            f"ours ≤ DDN's gradients per image at its smallest budget whose mean distortion is within "
            f"{100 * SPEED_TOLERANCE:g}% of ours (or at most ours), toward each target",
            "; ".join(f"{rule}: {text}" for rule, (_, text) in passes.items()),
            not missed, "" if not missed else "not met toward " + ", ".join(missed),
            key=f"imagenet-gradients:{network}/{method}"))
    return found


RULE_NAMES = {"runner-up": "the runner-up"}  # how a target rule reads in a sentence ("toward the runner-up")


@dataclass
class ImagenetWalks:
    """The two walks (ours-walk, DDN+walk) in the ImageNet comparison: what chapter 7 says of them, decided here."""

    rules: list[str]  # the target rules, in the order of the runs
    met: dict[str, list[str]]  # by walk: the rules toward which it meets the distortion target (every photo reached)
    ostrich_ratios: dict[str, np.ndarray]  # by walk: per photo toward ostrich, its ratio to the best peer
    own_farther: int  # photos on which ours-walk ends farther than DDN+walk toward ostrich
    walk: PeerResult  # ours-walk toward ostrich
    match: PeerResult | None  # toward ostrich the smallest DDN budget within SPEED_TOLERANCE of ours-walk's mean
    largest_ddn: PeerResult  # toward ostrich the largest DDN budget tested
    before_largest: PeerResult  # and the one before it
    unmatched: list[str]  # walks whose gradient verdicts hold since no DDN budget matches them toward either rule

    def met_phrase(self, method: str) -> str:
        """Toward which targets `method` meets the distortion target: 'toward both targets', 'toward A but not B'."""
        met = self.met[method]
        if met == self.rules:
            return "toward both targets" if len(met) == 2 else "toward every target"
        if not met:
            return "toward neither target" if len(self.rules) == 2 else "toward no target"
        names = [RULE_NAMES.get(r, r) for r in met], [RULE_NAMES.get(r, r) for r in self.rules if r not in met]
        return f"toward {' and '.join(names[0])} but not toward {' and '.join(names[1])}"

    @property
    def both_met(self) -> bool:
        """Whether both walks meet the distortion target toward every rule."""
        return all(m == self.rules for m in self.met.values())

    @property
    def same_targets(self) -> bool:
        """Whether the two walks meet the distortion target toward the same rules."""
        return self.met[WALK] == self.met[WALK_DDN]

    def mean_gap(self, result: PeerResult) -> float:
        """How much farther `result`'s mean distortion toward ostrich is than ours-walk's (a fraction; < 0: closer)."""
        return float(result.distortion.mean() / self.walk.distortion.mean() - 1)

    @property
    def ddn_change(self) -> float:
        """The change of DDN's mean distortion toward ostrich from its last budget but one to its last."""
        return float(self.largest_ddn.distortion.mean() / self.before_largest.distortion.mean() - 1)

    @property
    def ddn_stopped(self) -> bool:
        """Whether DDN's largest budget changes its mean distortion by less than SPEED_TOLERANCE: it stopped coming
        closer, so a larger budget is unlikely to match ours-walk."""
        return abs(self.ddn_change) < SPEED_TOLERANCE


def imagenet_walks(runs: Sequence[PeerRun]) -> ImagenetWalks:
    """The walks' standing in the ImageNet comparison (runs: one per rule, ostrich's among them)."""
    by_rule = {run.rule: run.results for run in runs}
    if "ostrich" not in by_rule:
        raise ValueError(f"imagenet_walks needs the ostrich run, got rules {list(by_rule)}")
    ostrich = by_rule["ostrich"]
    walks = (WALK, WALK_DDN)
    missing = [(rule, m) for rule, group in by_rule.items() for m in walks if _one(group, m) is None]
    if missing:
        raise ValueError(f"the ImageNet runs lack these walks: {missing}")
    ratios = {m: ratio_to_best_peer(ostrich, _one(ostrich, m)) for m in walks}
    ddn = _by_budget(ostrich, "DDN")
    if len(ddn) < 2:
        raise ValueError(f"the ostrich run needs at least two DDN budgets, got {[r.label for r in ddn]}")
    # with no DDN budget matching it toward any rule, a walk's gradient verdict holds (`_gradient_match`)
    unmatched = [m for m in walks if all(ddn_match(g, ours=_one(g, m)) is None for g in by_rule.values())]
    return ImagenetWalks(
        rules=list(by_rule), met={m: [rule for rule, g in by_rule.items() if _meets_distortion_target(g, _one(g, m))]
                                  for m in walks},
        ostrich_ratios=ratios, own_farther=int((ratios[WALK] > ratios[WALK_DDN]).sum()), walk=_one(ostrich, WALK),
        match=ddn_match(ostrich, ours=_one(ostrich, WALK)), largest_ddn=ddn[-1], before_largest=ddn[-2],
        unmatched=unmatched)


def imagenet_plot(runs: Sequence[PeerRun], ceiling: float = 2.0):
    """Per target rule: each method's median distortion / best peer against gradient evaluations per image (log).

    DDN is a curve over its budgets; ours and ours-sharp are curves over their c search (`PeerResult.trace`:
    the best success so far after each L-BFGS run, then after the refinement), ending at their final point.
    A median above `ceiling` is drawn hollow on the top edge, with its value; a curve starts below it.
    """
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(runs), figsize=(3.5 * len(runs) + 1.2, 3.3), squeeze=False, layout="constrained")
    for ax, run in zip(axes[0], runs):
        best = best_peer(run.results)
        for method in METHODS:
            found = _by_budget(run.results, method)
            if not found:
                continue
            color, marker = COLORS[method], MARKERS[method]
            if found[0].trace:
                steps = [(g, float(np.median(np.asarray(d) / best))) for g, d in found[0].trace]
                steps = [(g, v) for g, v in steps if np.isfinite(v) and v <= ceiling]  # starts below the ceiling
                if steps:
                    ax.plot(*zip(*steps), "-", color=color, lw=1, alpha=0.6, zorder=4 if method == OURS else 2)
            points = [(r.gradients, _median_to_best_peer(run.results, r)) for r in found]
            if len(points) > 1:
                ax.plot([g for g, _ in points], [min(v, ceiling) for _, v in points], "-", color=color, lw=1)
            for k, (g, v) in enumerate(points):
                ax.plot(g, min(v, ceiling), marker, color=color, ms={OURS: 10, SHARP: 7}.get(method, 6),
                        markerfacecolor=color if v <= ceiling else "none", zorder=5 if method == OURS else 3)
                if v > ceiling:
                    ax.annotate(f"{v:.1f}", (g, ceiling), textcoords="offset points", xytext=(0, -11), ha="center",
                                fontsize=6, color=color)
        ax.axhline(1.0, color="black", lw=0.5, ls=":")
        ax.axhline(CLOSE_ENOUGH, color="gray", lw=0.5, ls="--")
        ax.set_ylim(0.95, ceiling + 0.05)
        ax.set_xscale("log")
        ax.set_title(f"target: {run.rule}", fontsize=10)
        ax.set_xlabel("gradient evaluations / image (log)", fontsize=9)
        ax.set_ylabel("distortion / best peer (median)", fontsize=9)
        ax.tick_params(labelsize=8)
    shown = [m for m in METHODS if any(r.method == m for run in runs for r in run.results)]
    handles = [plt.Line2D([], [], color=COLORS[m], marker=MARKERS[m], ls="-", lw=1, label=m) for m in shown]
    handles.append(plt.Line2D([], [], color="gray", marker="o", markerfacecolor="none", ls="",
                              label=f"above {ceiling:g} (value below)"))
    axes[0][-1].legend(handles=handles, fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
    return fig
