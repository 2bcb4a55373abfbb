"""The model zoo: names -> specs -> trained models, with committed weights and a JSON record each.

Each spec names its training recipe: `paper` (Section 4.2: "Each of our models were trained with
L-BFGS until convergence": full-batch L-BFGS, `train.fit_lbfgs`) or `modern` (Adam, mini-batches,
cosine schedule, `train.fit`). The paper's names (softmax-1e-4, N100-100-10, ...) are the paper
recipe; the same models trained the modern way carry the suffix `-modern`.
`load(name)` reads `data/models/NAME.pt` when present, otherwise trains the model (progress bar)
and saves it atomically. `train(name)` always retrains from scratch.
"""
from __future__ import annotations

import io
import json
import platform
import time
from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from . import DATA_DIR, one_thread
from .data import atomic_write_bytes, load_mnist, split_halves
from .models import autoencoder, conv_net, encoder_classifier, sigmoid_mlp, softmax_classifier, weight_decay_penalty
from .train import classification_loss, error_rate, fit, fit_lbfgs, predict

MODEL_DIR = DATA_DIR / "models"


@dataclass(frozen=True)
class ModelSpec:
    """How one zoo model is built and trained."""

    arch: str  # "softmax" | "mlp" | "autoencoder" | "conv"
    description: str
    lambdas: tuple[float, ...] = ()  # the paper's per-layer weight decay, one per weight layer
    recipe: str = "modern"  # "paper": full-batch L-BFGS until convergence; "modern": Adam on mini-batches
    decay: str = "outputs"  # the reading of the paper's lambda/k (models.DECAY_READINGS)
    max_iter: int = 0  # paper recipe: the cap on L-BFGS iterations (reached only if it has not converged)
    precision: str = "float64"  # paper recipe: the dtype L-BFGS runs in
    hidden: tuple[int, ...] = ()
    train_on: str = "train"  # "train" (all 60,000), "P1" or "P2" (the paper's 30,000-image halves)
    epochs: int = 30
    batch_size: int = 128
    lr: float = 1e-3
    optimizer: str = "adam"
    dropout: float = 0.0
    seed: int = 0
    extra: dict = field(default_factory=dict)


SIGMOID_DECAY = (1e-5, 1e-5, 1e-6)
PAPER_DECAY = "half"  # the reading chosen in chapter 1: closest to Table 1's training errors (see decay_readings)
AE_EXTRA = {"ae_epochs": 30, "sparsity": 0.05, "sparsity_weight": 1.0, "ae_decay": 1e-6, "classifier_lr": 1e-2}
# The paper recipe's sparse autoencoder: the sparse-autoencoder objective of its time (squared error,
# KL sparsity with rho = 0.1 and beta = 3, decay 3e-3 as lambda/2 |w|^2; UFLDL's defaults), trained by L-BFGS.
AE_PAPER_EXTRA = {"sparsity": 0.1, "sparsity_weight": 3.0, "ae_decay": 3e-3, "ae_max_iter": 400}


def _paper(arch: str, description: str, **kw) -> ModelSpec:
    """A spec trained the paper's way: full-batch L-BFGS until convergence, decay read as PAPER_DECAY."""
    precision = "float64" if arch == "softmax" else "float32"  # float64 costs 2x on the networks
    return ModelSpec(arch, description, recipe="paper", decay=PAPER_DECAY, precision=precision, **kw)


# Modern recipe: the half-set models get 60 epochs over 30,000 images, the same number of steps as 30 over 60,000.
SPECS: dict[str, ModelSpec] = {
    "softmax-1e-4": _paper("softmax", "Softmax, lambda = 1e-4", lambdas=(1e-4,), max_iter=5000),
    "softmax-1e-2": _paper("softmax", "Softmax, lambda = 1e-2", lambdas=(1e-2,), max_iter=5000),
    "softmax-1": _paper("softmax", "Softmax, lambda = 1", lambdas=(1.0,), max_iter=5000),
    "N100-100-10": _paper("mlp", "Sigmoid network 784-100-100-10, lambda = 1e-5, 1e-5, 1e-6",
                          lambdas=SIGMOID_DECAY, hidden=(100, 100), max_iter=1500),
    "N200-200-10": _paper("mlp", "Sigmoid network 784-200-200-10, lambda = 1e-5, 1e-5, 1e-6",
                          lambdas=SIGMOID_DECAY, hidden=(200, 200), max_iter=1500),
    "AE400-10": _paper("autoencoder", "Sparse sigmoid autoencoder 400 units (frozen) + softmax, lambda = 1e-6",
                       lambdas=(1e-6,), hidden=(400,), max_iter=1500, extra=AE_PAPER_EXTRA),
    "FC100-100-10@P1": _paper("mlp", "Sigmoid 784-100-100-10 trained on P1", lambdas=SIGMOID_DECAY,
                              hidden=(100, 100), train_on="P1", max_iter=1500),
    "FC123-456-10@P1": _paper("mlp", "Sigmoid 784-123-456-10 trained on P1", lambdas=SIGMOID_DECAY,
                              hidden=(123, 456), train_on="P1", max_iter=1500),
    "FC100-100-10@P2": _paper("mlp", "Sigmoid 784-100-100-10 trained on P2", lambdas=SIGMOID_DECAY,
                              hidden=(100, 100), train_on="P2", max_iter=1500),
    "softmax-1e-4-modern": ModelSpec("softmax", "Softmax, lambda = 1e-4", lambdas=(1e-4,), epochs=15),
    "softmax-1e-2-modern": ModelSpec("softmax", "Softmax, lambda = 1e-2", lambdas=(1e-2,), epochs=15),
    "softmax-1-modern": ModelSpec("softmax", "Softmax, lambda = 1", lambdas=(1.0,), epochs=15),
    "N100-100-10-modern": ModelSpec("mlp", "Sigmoid network 784-100-100-10, lambda = 1e-5, 1e-5, 1e-6",
                                    lambdas=SIGMOID_DECAY, hidden=(100, 100), batch_size=64),
    "N200-200-10-modern": ModelSpec("mlp", "Sigmoid network 784-200-200-10, lambda = 1e-5, 1e-5, 1e-6",
                                    lambdas=SIGMOID_DECAY, hidden=(200, 200), batch_size=64),
    "AE400-10-modern": ModelSpec("autoencoder", "Sparse sigmoid autoencoder 400 units (frozen) + softmax, "
                                 "lambda = 1e-6", lambdas=(1e-6,), hidden=(400,), epochs=30, extra=AE_EXTRA),
    "Conv": ModelSpec("conv", "Conv 32x5x5, ReLU, max-pool 2, FC 128, ReLU, dropout 0.5, softmax",
                      lambdas=(0.0, 1e-5, 1e-6), dropout=0.5, epochs=12),
    "FC100-100-10@P1-modern": ModelSpec("mlp", "Sigmoid 784-100-100-10 trained on P1", lambdas=SIGMOID_DECAY,
                                        hidden=(100, 100), train_on="P1", batch_size=64, epochs=60),
    "FC123-456-10@P1-modern": ModelSpec("mlp", "Sigmoid 784-123-456-10 trained on P1", lambdas=SIGMOID_DECAY,
                                        hidden=(123, 456), train_on="P1", batch_size=64, epochs=60),
    "FC100-100-10@P2-modern": ModelSpec("mlp", "Sigmoid 784-100-100-10 trained on P2", lambdas=SIGMOID_DECAY,
                                        hidden=(100, 100), train_on="P2", batch_size=64, epochs=60),
}
NAMES = tuple(SPECS)


def spec(name: str) -> ModelSpec:
    """The spec of a zoo model; an unknown name lists the valid ones."""
    if name not in SPECS:
        raise KeyError(f"unknown model {name!r}; valid names: {', '.join(NAMES)}")
    return SPECS[name]


def build(name: str) -> nn.Sequential:
    """An untrained model of the named architecture (seeded)."""
    s = spec(name)
    torch.manual_seed(s.seed)
    if s.arch == "softmax":
        return softmax_classifier()
    if s.arch == "mlp":
        return sigmoid_mlp(s.hidden, dropout=s.dropout)
    if s.arch == "autoencoder":
        return encoder_classifier(autoencoder(s.hidden[0]))
    if s.arch == "conv":
        return conv_net(dropout=s.dropout)
    raise ValueError(f"unknown architecture {s.arch!r} in spec {name!r}")


def training_data(train_on: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Images and labels a spec trains on: the whole training set, or the half P1 / P2."""
    images, labels = load_mnist(train=True)
    if train_on == "train":
        return images, labels
    halves = dict(zip(("P1", "P2"), split_halves()))
    if train_on not in halves:
        raise ValueError(f"train_on must be 'train', 'P1' or 'P2', got {train_on!r}")
    return images[halves[train_on]], labels[halves[train_on]]


def _fit(s: ModelSpec, model: nn.Module, images: torch.Tensor, labels: torch.Tensor, loss, *, desc: str,
         progress: bool, on_epoch=None, max_iter: int | None = None, epochs: int | None = None,
         lr: float | None = None) -> list[dict]:
    """Train `model` on (images, labels) with the spec's recipe: full-batch L-BFGS (paper) or Adam (modern)."""
    if s.recipe == "paper":
        return fit_lbfgs(model, images, labels, loss, max_iter=max_iter or s.max_iter, dtype=getattr(torch, s.precision),
                         desc=desc, progress=progress, on_log=on_epoch)
    if s.recipe != "modern":
        raise ValueError(f"unknown recipe {s.recipe!r}: 'paper' or 'modern'")
    return fit(model, images, labels, loss, epochs=epochs or s.epochs, batch_size=s.batch_size, lr=lr or s.lr,
               optimizer=s.optimizer, seed=s.seed, desc=desc, progress=progress, on_epoch=on_epoch)


def _train_autoencoder_classifier(s: ModelSpec, images: torch.Tensor, labels: torch.Tensor, progress: bool):
    """Sparse autoencoder on the images, then a softmax on its frozen 400-unit code (never fine-tuned)."""
    torch.manual_seed(s.seed)
    ae = autoencoder(s.hidden[0])
    rho, beta, decay = s.extra["sparsity"], s.extra["sparsity_weight"], s.extra["ae_decay"]

    def ae_loss(model: nn.Module, x: torch.Tensor, _: torch.Tensor) -> torch.Tensor:
        code = model[:3](x)
        recon = model[3:](code)
        rho_hat = code.mean(0).clamp(1e-6, 1 - 1e-6)
        kl = (rho * torch.log(rho / rho_hat) + (1 - rho) * torch.log((1 - rho) / (1 - rho_hat))).sum()
        if s.recipe == "paper":  # the sparse-autoencoder objective: half the summed squared error per image
            error = 0.5 * (recon - x).pow(2).flatten(1).sum(1).mean()
            return error + beta * kl + weight_decay_penalty(model, (decay, decay), s.decay)
        return F.binary_cross_entropy(recon, x) + beta * kl / s.hidden[0] + weight_decay_penalty(
            model, (decay, decay), s.decay
        )

    ae_history = _fit(s, ae, images, labels, ae_loss, desc="AE400 autoencoder", progress=progress,
                      max_iter=s.extra.get("ae_max_iter"), epochs=s.extra.get("ae_epochs"))
    model = encoder_classifier(ae)
    for p in model[:3].parameters():
        p.requires_grad_(False)
    with torch.no_grad():
        codes = torch.cat([model[:3](images[i : i + 5000]) for i in range(0, len(images), 5000)])
    history = _fit(s, model[3], codes, labels,
                   classification_loss(lambda m: weight_decay_penalty(m, s.lambdas, s.decay)), desc="AE400 softmax",
                   progress=progress, lr=s.extra.get("classifier_lr"))
    return model, {"autoencoder": ae_history, "classifier": history}


def train(name: str, progress: bool = True, save: bool = True) -> nn.Sequential:
    """Train the named model from scratch, record its errors, and save weights + JSON atomically.

    Training runs on one thread: the result is then the same on any number of cores, and two
    threads on a busy 2-core machine were measured 20x slower per step, not faster.
    (`python -m lib train all` trains several models in parallel processes instead.)
    """
    s = spec(name)
    with one_thread():
        return _train(name, s, progress, save)


def _train(name: str, s: ModelSpec, progress: bool, save: bool) -> nn.Sequential:
    torch.set_flush_denormal(True)
    images, labels = training_data(s.train_on)
    start = time.perf_counter()
    if s.arch == "autoencoder":
        model, history = _train_autoencoder_classifier(s, images, labels, progress)
    else:
        model = build(name)
        penalty = lambda m: weight_decay_penalty(m, s.lambdas, s.decay)  # noqa: E731
        loss, on_epoch = classification_loss(penalty), _test_error_log
        if s.recipe == "paper":  # it logs the error on its own training images; the test set is for the final model

            def on_epoch(iteration: int, m: nn.Module) -> dict:
                return {"train_error": error_rate(m, images, labels)}

        history = _fit(s, model, images, labels, loss, desc=name, progress=progress, on_epoch=on_epoch)
    seconds = time.perf_counter() - start
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    if save:
        record = {"name": name, "spec": asdict(s), "train_seconds": round(seconds, 1),
                  **errors(model), "history": history, "versions": versions()}
        _save(name, model, record)
    return model


def _test_error_log(epoch: int, model: nn.Module) -> dict:
    """Per-epoch log entry: the test error in percent."""
    test_x, test_y = load_mnist(train=False)
    return {"test_error": error_rate(model, test_x, test_y)}


def retrain(name: str) -> dict:
    """Train the named model from scratch without a progress bar, save it, and return its record."""
    train(name, progress=False)
    return record(name)


def errors(model: nn.Module) -> dict[str, float]:
    """Error in percent on the training set, its halves P1 and P2, and the test set."""
    train_x, train_y = load_mnist(train=True)
    test_x, test_y = load_mnist(train=False)
    wrong = (predict(model, train_x) != train_y).double()
    p1, p2 = split_halves()
    percent = lambda w: round(100.0 * w.mean().item(), 4)  # noqa: E731
    return {"train_error": percent(wrong), "P1_error": percent(wrong[p1]), "P2_error": percent(wrong[p2]),
            "test_error": percent((predict(model, test_x) != test_y).double())}


def versions() -> dict[str, str]:
    import numpy
    import torchvision

    return {"python": platform.python_version(), "torch": torch.__version__,
            "torchvision": torchvision.__version__, "numpy": numpy.__version__,
            "threads": str(torch.get_num_threads())}


def _save(name: str, model: nn.Module, record: dict) -> None:
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    atomic_write_bytes(MODEL_DIR / f"{name}.pt", buffer.getvalue())
    atomic_write_bytes(MODEL_DIR / f"{name}.json", (json.dumps(record, indent=1) + "\n").encode())


def fingerprint(name: str) -> str:
    """A short hash of the named model's weights file: cached results made with it are keyed by it."""
    import hashlib

    path = MODEL_DIR / f"{name}.pt"
    if not path.exists():
        load(name)  # trains and saves it
    return hashlib.sha1(path.read_bytes()).hexdigest()[:12]


def record(name: str) -> dict:
    """The JSON record saved beside the named model's weights."""
    spec(name)
    path = MODEL_DIR / f"{name}.json"
    if not path.exists():
        raise FileNotFoundError(f"no record for {name!r} at {path}; run `python -m lib train {name}`")
    return json.loads(path.read_text())


def load(name: str, progress: bool = True) -> nn.Sequential:
    """The trained model in eval mode: committed weights if present, otherwise trained now and saved."""
    spec(name)
    path = MODEL_DIR / f"{name}.pt"
    if not path.exists():
        return train(name, progress=progress)
    model = build(name)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except Exception as err:  # noqa: BLE001 - any unreadable file is reported the same way
        raise RuntimeError(f"weights file {path} is corrupted or does not match {name!r}: {err}") from err
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model
