"""Figure 5 on photographs: the paper's attack on pretrained ImageNet networks, and what its examples survive.

The experiment behind the natural-images chapter, in three stages that `python -m lib imagenet` runs
and commits to `data/results/imagenet/` (the chapter only reads them):
1. `run_attacks`: the paper's attack (`attack.lbfgs_attack`, its defaults) on every photo that all three
   EfficientNet-Lite networks classify correctly (`used_photos`), toward "ostrich" and toward the
   runner-up, for each network; then the same example moved onto the 8-bit grid (`quantise.to_grid`,
   `add_grid`; the CLI's grid stage redoes only this where quantise.VERSION changed).
2. `evaluate`: whether each example survives rounding to 8 bits, a PNG round trip and JPEG; how it transfers
   to the other networks, magnified along r, beside Gaussian noise of the same stddev.
3. Table 5 on EfficientNet-Lite0 (`lib.imagenet_bounds`).
`findings` turns the committed results into the chapter's verdicts.
"""
from __future__ import annotations

import dataclasses
import importlib.metadata
import io
import json
import math
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from . import DATA_DIR, attack, imagenet, paper, photos, quantise, visibility
from .peers import CountingModel  # noqa: F401 (natural_images.CountingModel)
from .data import atomic_write_bytes
from .findings import Finding

VERSION = 1  # bump when a stage's results change: the committed files carry it
RESULTS_DIR = DATA_DIR / "results" / "imagenet"
RULES = ("ostrich", "runner-up")  # the target of each attack: Figure 5's "ostrich", or the runner-up label
MAGNIFICATIONS = (1.0, 1.5, 2.0, 4.0, 8.0)  # r scaled by these for the transfer curve
NOISE_SEEDS = 5  # Gaussian noise draws per example and size
JPEG_QUALITIES = (95, 75)


# ----------------------------------------------------------------------------------------------
# Which photos
# ----------------------------------------------------------------------------------------------


@torch.no_grad()
def top1_table(names: Sequence[str] = imagenet.LITE_NAMES) -> dict[str, dict[str, int]]:
    """{network: {photo: top-1 class}} for every bundled photo."""
    x, records = photos.load()
    return {n: dict(zip(photos.NAMES, imagenet.load(n)(x).argmax(1).tolist())) for n in names}


def used_photos(top1: dict[str, dict[str, int]]) -> list[str]:
    """The photos every network of `top1` classifies as one of their correct classes (in `photos.NAMES` order)."""
    return [p.name for p in photos.PHOTOS if all(table[p.name] in p.correct for table in top1.values())]


# ----------------------------------------------------------------------------------------------
# Stage 1: the attacks
# ----------------------------------------------------------------------------------------------


@dataclass
class PhotoAttacks:
    """One network's attack toward one target rule on N photos: inputs, examples (float and 8-bit), outcomes."""
    network: str
    rule: str
    photos: list[str]
    x: np.ndarray  # [N,3,224,224] uint8: the input photos (on the 8-bit grid)
    x_adv: np.ndarray  # [N,3,224,224] float32 in [0,1]: the paper's attack
    x_adv_8bit: np.ndarray  # [N,3,224,224] uint8: the same moved onto the grid (quantise.to_grid)
    label: np.ndarray  # [N] the network's top-1 class of x
    target: np.ndarray  # [N]
    label_adv: np.ndarray  # [N] top-1 of x_adv
    label_adv_8bit: np.ndarray  # [N] top-1 of x_adv_8bit / 255
    prob: np.ndarray  # [N] softmax probability of `label` at x
    prob_adv: np.ndarray  # [N] probability of label_adv at x_adv
    prob_adv_8bit: np.ndarray  # [N]
    distortion: np.ndarray  # [N] sqrt(sum r^2 / n), n = 150,528, pixels in [0,1]
    distortion_8bit: np.ndarray  # [N]
    scale_8bit: np.ndarray  # [N] the t of quantise.to_grid (nan: none found)
    c: np.ndarray  # [N] the attack's smallest successful c
    meta: dict  # provenance and cost: weights, versions, seconds, gradient evaluations

    @property
    def success(self) -> np.ndarray:
        return self.label_adv == self.target

    @property
    def success_8bit(self) -> np.ndarray:
        return self.label_adv_8bit == self.target

    def float_inputs(self) -> tuple[Tensor, Tensor, Tensor]:
        """(x, x_adv, x_adv_8bit) as float tensors in [0,1]."""
        return (torch.from_numpy(self.x).float() / 255, torch.from_numpy(self.x_adv),
                torch.from_numpy(self.x_adv_8bit).float() / 255)

    def max_change_grey_levels(self, eight_bit: bool = False) -> np.ndarray:
        """[N] the largest change of one pixel value, in grey levels (units of 1/255)."""
        x, x_adv, x_8 = self.float_inputs()
        return ((x_8 if eight_bit else x_adv) - x).abs().flatten(1).amax(1).numpy() * 255


ARRAYS = [f.name for f in dataclasses.fields(PhotoAttacks) if f.name not in ("network", "rule", "photos", "meta")]


def attacks_path(network: str, rule: str) -> Path:
    """Where the committed attacks of `network` toward `rule` live (.npz arrays; a .json beside them)."""
    return RESULTS_DIR / "attacks" / f"{network}_{rule}.npz"


def _provenance(network: str) -> dict:
    import timm

    return dict(weights=dataclasses.asdict(imagenet.info(network)), torch=torch.__version__, timm=timm.__version__,
                numpy=np.__version__, attack_version=attack.VERSION, version=VERSION, python=platform.python_version(),
                preprocessing=f"PIL bicubic resize of the shorter side to {photos.RESIZE}, centre crop {photos.SIZE}")


def _check_rule(rule: str) -> None:
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}")


def _targets(model: nn.Module, x: Tensor, rule: str) -> tuple[Tensor, Tensor]:
    with torch.no_grad():
        logits = model(x)
    label = logits.argmax(1)
    if rule == "ostrich":
        return label, torch.full_like(label, imagenet.OSTRICH)
    return label, logits.scatter(1, label[:, None], -math.inf).argmax(1)


@torch.no_grad()
def _top1(model: nn.Module, x: Tensor) -> tuple[np.ndarray, np.ndarray]:
    p = model(x).softmax(1)
    prob, label = p.max(1)
    return label.numpy(), prob.numpy()


def run_attacks(network: str, rule: str, names: Sequence[str], device: str | None = None) -> PhotoAttacks:
    """The paper's attack (lbfgs_attack, defaults) on photos `names` for `network` toward `rule`, then onto the grid."""
    _check_rule(rule)
    model = imagenet.load(network)
    x, _ = photos.load(names)
    label, target = _targets(model, x, rule)
    if rule == "ostrich" and (label == imagenet.OSTRICH).any():
        raise ValueError("a photo is already classified as ostrich")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    counted = CountingModel(model).to(device)
    start = time.perf_counter()
    result = attack.lbfgs_attack(counted, x.to(device), target.to(device))
    seconds = time.perf_counter() - start
    model.cpu()
    gradient_evaluations, forward_evaluations = counted.gradient_evaluations, counted.forward_evaluations
    meta = dict(_provenance(network), device=device, seconds=seconds, gradient_evaluations=gradient_evaluations,
                forward_evaluations=forward_evaluations,
                attack="attack.lbfgs_attack with its defaults (c_init 1, 10 c steps, 100 iterations, history 10, "
                       "cross-entropy, refine)")
    x_adv = result.x_adv.cpu()
    label_adv, prob_adv = _top1(model, x_adv)
    _, prob = _top1(model, x)
    empty = np.zeros(len(names))
    run = PhotoAttacks(
        network, rule, list(names), x=np.round(x.numpy() * 255).astype(np.uint8), x_adv=x_adv.numpy(),
        x_adv_8bit=np.zeros_like(x.numpy(), dtype=np.uint8), label=label.numpy(), target=target.numpy(),
        label_adv=label_adv, label_adv_8bit=empty.astype(np.int64), prob=prob.astype(np.float64),
        prob_adv=prob_adv.astype(np.float64), prob_adv_8bit=empty, distortion=attack.distortion(x, x_adv).double().numpy(),
        distortion_8bit=empty, scale_8bit=empty, c=result.c.cpu().double().numpy(), meta=meta)
    return add_grid(run)


def attack_and_save(network: str, rule: str, names: Sequence[str], device: str | None = None) -> str:
    """`run_attacks` then `save_attacks`, in a fresh process of one thread (the CLI's unit of work); a summary line."""
    from . import setup_torch

    setup_torch()
    run = run_attacks(network, rule, names, device=device)
    save_attacks(run)
    return (f"{network} {rule}: success {int(run.success.sum())}/{len(run.photos)}, 8-bit {int(run.success_8bit.sum())}, "
            f"distortion {run.distortion.mean():.5f} (8-bit {run.distortion_8bit.mean():.5f}), "
            f"{run.meta['seconds']:.0f} s, {run.meta['gradient_evaluations'] / len(run.photos):.0f} gradients per photo")


def add_grid(run: PhotoAttacks) -> PhotoAttacks:
    """`run` with its 8-bit fields (re)computed from its float examples by `quantise.to_grid`."""
    model = imagenet.load(run.network)
    x, x_adv, _ = run.float_inputs()
    target = torch.from_numpy(run.target)
    start = time.perf_counter()
    counted = CountingModel(model)
    x_8bit, scale = quantise.to_grid(counted, x, x_adv, target)
    label_8bit, prob_8bit = _top1(model, x_8bit)
    meta = dict(run.meta, grid_version=quantise.VERSION, grid_seconds=time.perf_counter() - start,
                grid_gradient_evaluations=counted.gradient_evaluations,
                grid_forward_evaluations=counted.forward_evaluations)
    return dataclasses.replace(run, x_adv_8bit=np.round(x_8bit.numpy() * 255).astype(np.uint8),
                               label_adv_8bit=label_8bit, prob_adv_8bit=prob_8bit.astype(np.float64),
                               distortion_8bit=attack.distortion(x, x_8bit).double().numpy(),
                               scale_8bit=scale.double().numpy(), meta=meta)


def save_attacks(run: PhotoAttacks) -> Path:
    """Write `run` atomically: the arrays as .npz, then the .json (photos, meta) that marks it complete."""
    path = attacks_path(run.network, run.rule)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **{name: getattr(run, name) for name in ARRAYS})
    atomic_write_bytes(path, buffer.getvalue())
    record = dict(network=run.network, rule=run.rule, photos=run.photos, meta=run.meta)
    atomic_write_bytes(path.with_suffix(".json"), (json.dumps(record, indent=1) + "\n").encode())
    return path


def attacks_are_current(network: str, rule: str, names: Sequence[str]) -> bool:
    """Whether the committed run of `network` toward `rule` exists for `names` under today's VERSION and attack.VERSION."""
    path = attacks_path(network, rule).with_suffix(".json")
    if not path.exists() or not attacks_path(network, rule).exists():
        return False
    record = json.loads(path.read_text())
    meta = record["meta"]
    return (record["photos"] == list(names) and meta.get("version") == VERSION
            and meta.get("attack_version") == attack.VERSION)


def load_attacks(network: str, rule: str) -> PhotoAttacks:
    """The committed attacks of `network` toward `rule`; FileNotFoundError naming the command that makes them."""
    _check_rule(rule)
    path = attacks_path(network, rule)
    if not path.with_suffix(".json").exists() or not path.exists():
        raise FileNotFoundError(f"no committed attacks for {network} toward {rule}: run python -m lib imagenet")
    record = json.loads(path.with_suffix(".json").read_text())
    with np.load(path) as arrays:
        values = {name: arrays[name] for name in ARRAYS}
    return PhotoAttacks(record["network"], record["rule"], record["photos"], meta=record["meta"], **values)


def validation_photos(network: str) -> list[str]:
    """The bundled photos that `network`'s committed attacks do not use: where the ImageNet benchmarks choose settings."""
    used = load_attacks(network, RULES[0]).photos
    return [n for n in photos.NAMES if n not in used]


# ----------------------------------------------------------------------------------------------
# Stage 2: what the examples survive, and how they transfer
# ----------------------------------------------------------------------------------------------


def png_round_trip(x: Tensor) -> Tensor:
    """Each image [3,H,W] in [0,1] saved as an 8-bit PNG and read back (PIL, in memory)."""
    return _round_trip(x, "PNG", {})


def jpeg_round_trip(x: Tensor, quality: int) -> Tensor:
    """Each image saved as a JPEG of `quality` (PIL's defaults otherwise: 4:2:0 chroma subsampling) and read back."""
    if not 1 <= quality <= 95:
        raise ValueError(f"JPEG quality must be in 1..95, got {quality}")
    return _round_trip(x, "JPEG", {"quality": quality})


def _round_trip(x: Tensor, kind: str, options: dict) -> Tensor:
    from PIL import Image

    out = []
    for image in x:
        pixels = np.round(image.permute(1, 2, 0).clamp(0, 1).numpy() * 255).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format=kind, **options)
        buffer.seek(0)
        out.append(torch.from_numpy(np.asarray(Image.open(buffer).convert("RGB")).copy()).permute(2, 0, 1))
    return torch.stack(out).float() / 255


STORAGE = {"float": lambda x: x, "rounded to 8 bits": quantise.on_grid, "PNG": png_round_trip,
           **{f"JPEG {q}": (lambda x, q=q: jpeg_round_trip(x, q)) for q in JPEG_QUALITIES}}


@torch.no_grad()
def survival(runs: Sequence[PhotoAttacks]) -> list[dict]:
    """One row per example, kind (float or 8-bit) and storage: whether the network still says the target.

    `clean_gives_target` marks the rows where the same storage applied to the *photo* already makes the
    network say the target (a near tie, tipped by the storage itself rather than by the perturbation).
    """
    rows = []
    for run in runs:
        model = imagenet.load(run.network)
        x, x_adv, x_8bit = run.float_inputs()
        clean = {storage: model(store(x)).argmax(1).numpy() for storage, store in STORAGE.items()}
        for kind, images in (("float", x_adv), ("8-bit", x_8bit)):
            for storage, store in STORAGE.items():
                label = model(store(images)).argmax(1).numpy()
                for i, name in enumerate(run.photos):
                    rows.append(dict(network=run.network, rule=run.rule, photo=name, example=kind, storage=storage,
                                     label=int(label[i]), target_kept=bool(label[i] == run.target[i]),
                                     clean_gives_target=bool(clean[storage][i] == run.target[i])))
    return rows


@torch.no_grad()
def transfer(runs: Sequence[PhotoAttacks], networks: Sequence[str], seed: int = 0) -> list[dict]:
    """Each float example, magnified along r and beside Gaussian noise of the same stddev, fed to every network.

    Rows: source network, rule, photo, evaluating network, perturbation ("adversarial" or "noise"),
    magnification m (the noise has stddev m x the example's distortion; NOISE_SEEDS draws, clipped to
    [0,1] like the example), and, as a fraction over the noise draws: whether the evaluating network's top-1
    is outside the photo's accepted classes (`misclassified`, the paper's error), differs from its top-1 on the
    photo (`changed`) and equals the target (`target_hit`; `clean_is_target` marks the rows where the
    evaluating network already says the target on the photo: a runner-up of one network can be another's
    first choice).
    """
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for run in runs:
        x, x_adv, _ = run.float_inputs()
        r = x_adv - x
        sigma = torch.from_numpy(run.distortion).float()
        noise = torch.randn((NOISE_SEEDS, *x.shape), generator=generator)
        accepted = [torch.tensor(photos.photo(name).correct) for name in run.photos]
        for evaluator in networks:
            model = imagenet.load(evaluator)
            clean = model(x).argmax(1)
            for m in MAGNIFICATIONS:
                adv = model((x + m * r).clamp(0, 1)).argmax(1)
                noisy = torch.stack([model((x + m * sigma[:, None, None, None] * n).clamp(0, 1)).argmax(1)
                                     for n in noise])  # [seeds, N]
                for i, name in enumerate(run.photos):
                    base = dict(source=run.network, rule=run.rule, photo=name, network=evaluator, magnification=m,
                                clean_is_target=bool(clean[i] == int(run.target[i])))
                    wrong = ~torch.isin(noisy[:, i], accepted[i])
                    rows.append(dict(base, perturbation="adversarial", changed=float(adv[i] != clean[i]),
                                     misclassified=float(not torch.isin(adv[i], accepted[i])),
                                     target_hit=float(adv[i] == int(run.target[i]))))
                    rows.append(dict(base, perturbation="noise", changed=(noisy[:, i] != clean[i]).float().mean().item(),
                                     misclassified=wrong.float().mean().item(),
                                     target_hit=(noisy[:, i] == int(run.target[i])).float().mean().item()))
    return rows


def evaluation_path() -> Path:
    return RESULTS_DIR / "evaluation.json"


def evaluate(networks: Sequence[str] = imagenet.LITE_NAMES) -> dict:
    """Stage 2 on the committed attacks of `networks`: survival and transfer rows (to AlexNet as well where its
    weights are cached), written to evaluation.json."""
    runs = [load_attacks(n, rule) for n in networks for rule in RULES]
    evaluators = [*networks, *imagenet.available(["alexnet"])]  # AlexNet too where its weights are cached
    start = time.perf_counter()
    result = dict(version=VERSION, attack_version=attack.VERSION, grid_version=quantise.VERSION,
                  weights={n: imagenet.info(n).sha256 for n in evaluators}, torch=torch.__version__,
                  pillow=importlib.metadata.version("pillow"), seed=0, networks=evaluators, survival=survival(runs),
                  transfer=transfer(runs, evaluators), noise_seeds=NOISE_SEEDS, magnifications=list(MAGNIFICATIONS))
    result["seconds"] = time.perf_counter() - start
    atomic_write_bytes(evaluation_path(), (json.dumps(result, indent=0) + "\n").encode())
    return result


def load_evaluation() -> dict:
    """The committed evaluation.json; FileNotFoundError naming the command that makes it."""
    if not evaluation_path().exists():
        raise FileNotFoundError("no committed evaluation of the ImageNet attacks: run python -m lib imagenet")
    return json.loads(evaluation_path().read_text())


# ----------------------------------------------------------------------------------------------
# Tables and verdicts
# ----------------------------------------------------------------------------------------------


def load_all(networks: Sequence[str] = imagenet.LITE_NAMES) -> list[PhotoAttacks]:
    """Every committed run: each network toward each rule."""
    return [load_attacks(n, rule) for n in networks for rule in RULES]


def attack_table(runs: Sequence[PhotoAttacks]):
    """One row per example: network, rule, photo, labels, success, misclassified (the target is not one of the
    photo's accepted classes, and reached), distortion (float, 8-bit), largest changes."""
    import pandas as pd

    names = imagenet.class_names()
    rows = []
    for run in runs:
        big, big_8 = run.max_change_grey_levels(), run.max_change_grey_levels(eight_bit=True)
        for i, photo in enumerate(run.photos):
            rows.append(dict(network=run.network, rule=run.rule, photo=photo, label=names[run.label[i]],
                             target=names[run.target[i]], success=bool(run.success[i]),
                             misclassified=bool(run.success[i] and run.target[i] not in photos.photo(photo).correct),
                             distortion=float(run.distortion[i]), max_change=float(big[i]),
                             success_8bit=bool(run.success_8bit[i]), distortion_8bit=float(run.distortion_8bit[i]),
                             max_change_8bit=float(big_8[i]), seconds=run.meta["seconds"] / len(run.photos),
                             gradients=run.meta["gradient_evaluations"] / len(run.photos)))
    return pd.DataFrame(rows)


def survival_table(evaluation: dict):
    """Share of examples (per kind, float or 8-bit) still classified as the target after each storage."""
    import pandas as pd

    frame = pd.DataFrame(evaluation["survival"])
    table = frame.pivot_table(index="example", columns="storage", values="target_kept", aggfunc="mean")
    return table[list(STORAGE)].reindex(["float", "8-bit"])


def transfer_curve(evaluation: dict, rule: str | None = None):
    """Per perturbation and magnification, over examples (of `rule`, or all) and the *other* networks: the share
    misclassified (top-1 outside the photo's accepted classes), the share whose top-1 changed, and the share
    that reached the target among those not already at it on the photo."""
    import pandas as pd

    frame = pd.DataFrame(evaluation["transfer"])
    frame = frame[frame["source"] != frame["network"]]
    if rule is not None:
        _check_rule(rule)
        frame = frame[frame["rule"] == rule]
    by = frame.groupby(["perturbation", "magnification"])
    fresh = frame[~frame["clean_is_target"]]
    hit = fresh.groupby(["perturbation", "magnification"])["target_hit"].mean()
    return pd.DataFrame({"misclassified": by["misclassified"].mean(), "changed": by["changed"].mean(),
                         "target_hit": hit}).reset_index()


@dataclass(frozen=True)
class TransferTest:
    """At one magnification, on the other networks: does an example make a network misclassify more often than noise?

    Misclassify: a top-1 outside the photo's accepted classes (the paper's error). Paired by (example, other
    network): a pair counts for the examples when the example is misclassified and fewer than all noise draws
    are, against them when the example is not and some draw is. The one-sided
    sign test asks whether the first kind outnumbers the second by more than chance. The pairs come from a
    few photos, so they are not independent: the p-value is optimistic.
    """
    magnification: float
    pairs: int  # (example, other network) pairs
    adversarial_wrong: int  # pairs where the example is misclassified
    noise_wrong: int  # noise draws misclassified, over all pairs
    noise_draws: int
    for_examples: int  # pairs where the example is misclassified more often than the noise draws are
    against: int  # pairs where the noise is, more often
    p_value: float

    @property
    def holds(self) -> bool:
        return self.p_value < SIGNIFICANCE


SIGNIFICANCE = 0.05


def transfer_tests(evaluation: dict) -> list[TransferTest]:
    """`TransferTest` at every magnification of the evaluation (noise: `noise_seeds` draws per pair)."""
    import pandas as pd
    from scipy.stats import binomtest

    frame = pd.DataFrame(evaluation["transfer"])
    frame = frame[frame["source"] != frame["network"]]
    seeds = evaluation["noise_seeds"]
    keys = ["source", "rule", "photo", "network", "magnification"]
    paired = frame.pivot_table(index=keys, columns="perturbation", values="misclassified").reset_index()
    tests = []
    for m in evaluation["magnifications"]:
        at = paired[paired["magnification"] == m]
        wins, losses = int((at["adversarial"] > at["noise"]).sum()), int((at["adversarial"] < at["noise"]).sum())
        p = binomtest(wins, wins + losses, 0.5, alternative="greater").pvalue if wins + losses else 1.0
        tests.append(TransferTest(float(m), len(at), int(at["adversarial"].sum()), int(round(at["noise"].sum() * seeds)),
                                  len(at) * seeds, wins, losses, float(p)))
    return tests


def transfer_table(evaluation: dict, magnification: float = 1.0):
    """Share of a source network's examples (rows) that each network (columns) misclassifies, at `magnification`."""
    import pandas as pd

    frame = pd.DataFrame(evaluation["transfer"])
    frame = frame[(frame["magnification"] == magnification) & (frame["perturbation"] == "adversarial")]
    return frame.pivot_table(index="source", columns="network", values="misclassified", aggfunc="mean")


def grid_ratios(table):
    """Per rule: the mean over examples of (8-bit distortion / float distortion), and its largest value."""
    ratio = table["distortion_8bit"] / table["distortion"]
    return ratio.groupby(table["rule"]).agg(["mean", "max"])


def findings(runs: Sequence[PhotoAttacks], evaluation: dict, bounds=None) -> list[Finding]:
    """The paper's claims about its ImageNet examples (Figure 5, Section 4.2) and the book's 8-bit target, judged.

    runs: `load_all()`; evaluation: `load_evaluation()`; bounds: lite0's Table 5 (`imagenet_bounds`), or None.
    """
    if not runs:
        raise ValueError("no attack runs to judge")
    table = attack_table(runs)
    ostrich, runner = table[table["rule"] == "ostrich"], table[table["rule"] == "runner-up"]
    per_network = ostrich.groupby("network")["distortion"].mean()
    found = [Finding(
        "For every sample, the attack finds a close image that the network misclassifies (Figure 5: as \"ostrich\")",
        "Section 4.2: \"for each sample, we always manage to generate very close, visually indistinguishable, "
        "adversarial examples that are misclassified by the original network\"",
        f"toward ostrich: {int(ostrich['misclassified'].sum())} of {len(ostrich)} (photos x networks); toward the "
        f"runner-up: {int(runner['success'].sum())} of {len(runner)} reached, {int(runner['misclassified'].sum())} of "
        f"them a class the photo does not show",
        bool(ostrich["misclassified"].all()),
        f"judged on the ostrich examples ({len(runs[0].photos)} photos that all three networks classify correctly); "
        f"{int((runner['success'] & ~runner['misclassified']).sum())} of the {len(runner)} runner-up targets are "
        "another right answer for the photo, so reaching them is no mistake", key="imagenet-every-sample")]
    found.append(Finding(
        "Our perturbations are no larger than the paper's (average distortion 0.006508, AlexNet, 64 examples)",
        f"Figure 5's caption: average distortion {paper.FIGURE5_ALEXNET_DISTORTION} (unit not stated; read as "
        "ours, sqrt(sum r^2 / n) on [0,1] pixels)",
        "mean toward ostrich: " + ", ".join(f"{n} {v:.5f}" for n, v in per_network.items()),
        bool((per_network <= paper.FIGURE5_ALEXNET_DISTORTION).all()),
        "if the paper's unit is ours; other networks and photos than the paper's", key="imagenet-distortion"))
    grey, grey_8bit = ostrich["distortion"] * 255, ostrich["distortion_8bit"] * 255
    found.append(Finding(
        "The adversarial examples are visually indistinguishable from the originals",
        "Section 4.2: \"very close, visually indistinguishable, adversarial examples\"",
        f"toward ostrich, RMS change {grey.min():.2f} to {grey.max():.2f} grey levels (8-bit examples "
        f"{grey_8bit.min():.2f} to {grey_8bit.max():.2f}); largest single change {ostrich['max_change'].max():.1f} "
        f"grey levels (8-bit: {ostrich['max_change_8bit'].max():.0f})",
        bool((grey < visibility.INVISIBLE_RMS).all() and (grey_8bit < visibility.INVISIBLE_RMS).all()),
        f"judged by the book's measure, not by eye: an RMS change below {visibility.INVISIBLE_RMS:g} grey level "
        "(1/255), float and 8-bit", key="imagenet-indistinguishable"))
    tests = transfer_tests(evaluation)
    at_one = next(t for t in tests if t.magnification == 1.0)
    beat = [t for t in tests if t.holds]
    found.append(Finding(
        "Adversarial examples are misclassified by other networks more than noise of the same size",
        "Section 4.2, on MNIST (Tables 2 to 4); of convolutional networks: \"our first qualitative experiments "
        "with AlexNet gives us reason to believe that convolutional networks may behave similarly as well\"",
        f"at the size found, another network misclassifies {at_one.adversarial_wrong} of {at_one.pairs} "
        f"(example, network) pairs, and {at_one.noise_wrong} of {at_one.noise_draws} noise draws "
        f"(sign test p = {at_one.p_value:.2g})",
        at_one.holds,
        f"{len(runs[0].photos)} photos, EfficientNet-Lite0/1/2; " + (
            "magnified " + ", ".join(f"x{t.magnification:g}" for t in beat) + f" they are (p = {beat[0].p_value:.2g}"
            + (" at the smallest)" if len(beat) > 1 else ")") + f", of {len(tests)} sizes tested" if beat else
            f"nor at any of the {len(tests)} sizes up to x{tests[-1].magnification:g}"), key="imagenet-transfer"))
    kept = survival_table(evaluation)
    ratios = grid_ratios(table)
    found.append(Finding(
        "An 8-bit example toward ostrich (saved as PNG) still fools the network, at <= 1.5x the float distortion",
        "not in the paper: the book's target for examples that can be saved as images",
        f"float examples kept after PNG: {100 * kept.loc['float', 'PNG']:.0f}%; 8-bit examples: "
        f"{100 * kept.loc['8-bit', 'PNG']:.0f}%, at " + "; ".join(
            f"{rule} {row['mean']:.2f}x (up to {row['max']:.2f}x)" for rule, row in ratios.iterrows())
        + " the float distortion, per example",
        bool(kept.loc["8-bit", "PNG"] == 1.0 and ratios.loc["ostrich", "mean"] <= 1.5),
        "judged on the ostrich examples; the runner-up ones cost more than 1.5x: their float perturbations are a "
        "fraction of a grey level, and the grid's smallest step alone is larger" if ratios.loc["runner-up", "mean"] > 1.5
        else "", key="imagenet-8bit"))
    if bounds is not None:
        found.extend(bounds_findings(bounds))
    return found


def bounds_findings(bounds) -> list[Finding]:
    """Table 5's claims on EfficientNet-Lite0: every bound holds (power <= FFT), the first layer's exceeds 1."""
    from . import imagenet_bounds

    checks = imagenet_bounds.checks(bounds)
    linear = bounds[bounds["kind"].isin(["conv", "fc"])]
    first = float(linear["paper_bound"].iloc[0])
    return [Finding(
        "Table 5 on an ImageNet network: each layer's bound (from the Fourier transform) is at least its norm",
        "Section 4.3, Table 5 (AlexNet): upper bounds of each layer's linear map",
        f"EfficientNet-Lite0: power iteration, an estimate of each norm from below, stays within the bound on "
        f"{checks['power_within_bound']} of {checks['linear_layers']} conv and FC layers (batch norm folded)",
        checks["power_within_bound"] == checks["linear_layers"],
        "a check of the book's bounds, not a claim of the paper", key="imagenet-bound-valid"),
        Finding("Instability can appear as soon as the first layer: its upper bound exceeds 1",
                f"\"instabilities can appear as soon as in the first convolutional layer\" (AlexNet Conv. 1: "
                f"{paper.TABLE5[0]['upper_bound']:g}, the ICLR version's)",
                f"EfficientNet-Lite0 stem (batch norm folded): {first:.3g} on the normalised input, "
                f"{2 * first:.3g} per unit of [0,1] pixel", first > 1,
                "a bound above 1 allows instability; it does not show it", key="first-layer-unstable")]
