"""The two training recipes: the paper's full-batch L-BFGS (`fit_lbfgs`) and today's Adam loop (`fit`), and error rates."""
from __future__ import annotations

import copy
import math
from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


def classification_loss(penalty: Callable[[nn.Module], torch.Tensor] | None = None) -> LossFn:
    """Mean cross-entropy, plus `penalty(model)` (e.g. the paper's weight decay) when given."""

    def loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        value = F.cross_entropy(model(x), y)
        return value + penalty(model) if penalty is not None else value

    return loss


def fit(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    loss_fn: LossFn,
    *,
    epochs: int,
    batch_size: int = 128,
    lr: float = 1e-3,
    optimizer: str = "adam",
    seed: int = 0,
    desc: str = "training",
    progress: bool = True,
    on_epoch: Callable[[int, nn.Module], dict] | None = None,
) -> list[dict]:
    """Adam (or SGD with momentum 0.9) with a cosine learning-rate decay over seeded shuffled mini-batches.

    Returns one log dict per epoch (mean loss, plus whatever `on_epoch` adds).
    """
    if len(inputs) != len(targets):
        raise ValueError(f"inputs and targets differ in length: {len(inputs)} vs {len(targets)}")
    if epochs <= 0 or batch_size <= 0 or lr <= 0:
        raise ValueError(f"epochs, batch_size and lr must be positive, got {epochs}, {batch_size}, {lr}")
    torch.set_flush_denormal(True)  # decayed weights of blank border pixels become denormals: 10-20x slower
    params = [p for p in model.parameters() if p.requires_grad]
    if optimizer == "adam":
        opt = torch.optim.Adam(params, lr=lr)
    elif optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True)
    else:
        raise ValueError(f"optimizer must be 'adam' or 'sgd', got {optimizer!r}")
    steps_per_epoch = math.ceil(len(inputs) / batch_size)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda step: 0.5 * (1 + math.cos(math.pi * step / (epochs * steps_per_epoch)))
    )
    generator = torch.Generator().manual_seed(seed)
    history = []
    bar = tqdm(range(epochs), desc=desc, disable=not progress, leave=False)
    for epoch in bar:
        model.train()
        order = torch.randperm(len(inputs), generator=generator)
        total = 0.0
        for start in range(0, len(inputs), batch_size):
            idx = order[start : start + batch_size]
            loss = loss_fn(model, inputs[idx], targets[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            schedule.step()
            total += loss.item() * len(idx)
        log = {"epoch": epoch + 1, "loss": total / len(inputs)}
        model.eval()
        if on_epoch is not None:
            log.update(on_epoch(epoch + 1, model))
        history.append(log)
        bar.set_postfix({k: round(v, 4) for k, v in log.items() if k != "epoch"})
    model.eval()
    return history


LBFGS_GRAD_TOL = 1e-5  # stop when max |gradient| <= this (torch's tolerance_grad) ...
LBFGS_CHANGE_TOL = 1e-9  # ... or when the loss, or every weight, changes by less than this in one step


def fit_lbfgs(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    loss_fn: LossFn,
    *,
    max_iter: int = 2000,
    history: int = 20,
    dtype: torch.dtype = torch.float64,
    log_every: int = 50,
    desc: str = "L-BFGS",
    progress: bool = True,
    on_log: Callable[[int, nn.Module], dict] | None = None,
) -> list[dict]:
    """The paper's recipe (Section 4.2: "trained with L-BFGS until convergence"): full-batch L-BFGS, strong Wolfe.

    The loss is computed on all of `inputs` at once, in `dtype` (float64 by default), by
    torch.optim.LBFGS with a strong-Wolfe line search. It runs until torch's own tests say it has
    converged (max |gradient| <= LBFGS_GRAD_TOL, or a step that changes the loss or every weight
    by less than LBFGS_CHANGE_TOL) or for at most `max_iter` iterations; the last log entry says
    which (`converged`). The model is left in float32, in eval mode. Returns one log dict per
    `log_every` iterations (loss, max |gradient|, function evaluations, plus what `on_log` adds).
    """
    if len(inputs) != len(targets):
        raise ValueError(f"inputs and targets differ in length: {len(inputs)} vs {len(targets)}")
    if max_iter <= 0 or history <= 0 or log_every <= 0:
        raise ValueError(f"max_iter, history and log_every must be positive, got {max_iter}, {history}, {log_every}")
    torch.set_flush_denormal(True)
    model.to(dtype).train()
    x = inputs.to(dtype)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.LBFGS(params, lr=1, max_iter=log_every, history_size=history, line_search_fn="strong_wolfe",
                            tolerance_grad=LBFGS_GRAD_TOL, tolerance_change=LBFGS_CHANGE_TOL)

    def closure() -> torch.Tensor:
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model, x, targets)
        loss.backward()
        return loss

    history_log: list[dict] = []
    bar = tqdm(total=max_iter, desc=desc, disable=not progress, leave=False)
    done, converged = 0, False
    while done < max_iter and not converged:
        group = opt.param_groups[0]
        group["max_iter"] = min(log_every, max_iter - done)
        group["max_eval"] = 100 * group["max_iter"]  # never the reason a step ends: only the tolerances are
        evaluations = opt.state[opt._params[0]].get("func_evals", 0)
        first_loss = opt.step(closure)
        state = opt.state[opt._params[0]]
        loss = state.get("prev_loss", first_loss)  # the latest evaluation's (step() returns the first one's)
        step_iters = state["n_iter"] - done
        done = state["n_iter"]
        grad = max(p.grad.abs().max().item() for p in params)
        if state["func_evals"] - evaluations >= group["max_eval"]:
            raise RuntimeError(f"L-BFGS used {group['max_eval']} evaluations in {step_iters} iterations: "
                               "its line search is failing")
        # with max_eval out of the way, torch ends a step early only on its tolerances: convergence
        converged = step_iters < group["max_iter"] or grad <= LBFGS_GRAD_TOL
        log = {"iteration": done, "loss": float(loss), "max_grad": grad, "evaluations": state["func_evals"],
               "converged": converged}
        if on_log is not None:  # on a float32 copy: a round trip would truncate the float64 weights
            log.update(on_log(done, copy.deepcopy(model).to(torch.float32).eval()))
        history_log.append(log)
        bar.update(step_iters)
        bar.set_postfix(loss=f"{float(loss):.6g}", grad=f"{grad:.2g}")
    bar.close()
    model.to(torch.float32).eval()
    return history_log


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, batch_size: int = 2000) -> torch.Tensor:
    """Predicted labels [N] (model in eval mode)."""
    model.eval()
    return torch.cat([model(images[i : i + batch_size]).argmax(1) for i in range(0, len(images), batch_size)])


def error_rate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Classification error in percent."""
    return 100.0 * (predict(model, images) != labels).double().mean().item()
