"""Section 4.3: upper Lipschitz bounds of each layer, and of the whole network as their product.

A layer phi_k satisfies |phi_k(x) - phi_k(x + r)| <= L_k |r|, so the network satisfies L <= prod_k L_k.
For a linear layer L_k is its operator norm (largest singular value). For a convolution we compute it
in the Fourier domain, where the layer is block-diagonal (Sedghi, Gupta & Long 2019). We compare
three numbers per layer: the paper's FFT bound, an exact norm where one exists, and power iteration
on the layer as torch actually runs it (zero padding, any stride).

`findings` sets the paper's claims of Section 4.3 (Table 5) beside the chapter's results, with verdicts.

Conventions: `weight` is [out, in, kh, kw] as in nn.Conv2d; `input_size` is n or (h, w); shapes
passed to the model-level functions exclude the batch dimension, e.g. (1, 28, 28).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from . import one_thread, paper
from .findings import Finding

Size = int | Sequence[int]

CONTRACTION = {nn.ReLU: 1.0, nn.Tanh: 1.0, nn.Sigmoid: 0.25}  # sup |rho'|; sigmoid' = s(1 - s) <= 1/4
ISOMETRIES = (nn.Flatten, nn.Unflatten, nn.Identity, nn.Dropout)  # Dropout is the identity in eval()


def _pair(value: Size, what: str) -> tuple[int, int]:
    """Normalize n or (h, w) to a pair of positive ints, else raise ValueError."""
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) and v > 0 for v in pair):
        raise ValueError(f"{what} must be a positive int or a pair of them, got {value!r}")
    return pair


def _check_weight(weight: torch.Tensor) -> torch.Tensor:
    """A detached 4-D conv weight [out, in, kh, kw], else ValueError."""
    if not isinstance(weight, torch.Tensor) or weight.dim() != 4:
        shape = getattr(weight, "shape", weight)
        raise ValueError(f"conv weight must be a 4-D tensor [out, in, kh, kw], got {shape}")
    return weight.detach()


def _check_groups(weight: torch.Tensor, groups: int) -> int:
    """The number of groups of a conv weight [out, in / groups, kh, kw], else ValueError."""
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1 or weight.shape[0] % groups:
        raise ValueError(f"groups must be a positive int dividing the {weight.shape[0]} output channels, "
                         f"got {groups!r}")
    return groups


def _top_singular_values(blocks: torch.Tensor, vectors_by_norm: bool) -> torch.Tensor:
    """Largest singular value of each matrix in a batch [..., a, b]; a vector's norm when a or b is 1 and asked."""
    if vectors_by_norm and min(blocks.shape[-2:]) == 1:  # depthwise: a batched SVD of 1 x n blocks is slow
        return blocks.abs().square().sum((-2, -1)).sqrt()
    with one_thread():
        return torch.linalg.svdvals(blocks)[..., 0]


def conv_singular_values_fft(weight: torch.Tensor, input_size: Size, groups: int = 1) -> torch.Tensor:
    """All singular values of the stride-1 circular convolution on an h x w input, as [h, w, min(out, in)].

    Entry [i, j] holds the singular values (descending) of the out x in matrix W^(i, j) = DFT of the
    filter bank at frequency (i/h, j/w): with circular padding the layer is block-diagonal in the
    Fourier basis, so its singular values are exactly the union of these (Sedghi et al. 2019).
    Spectral norm: `conv_singular_values_fft(w, n).max()`.

    nn.Conv2d computes a cross-correlation, a convolution with the flipped kernel. For a real kernel
    the flip conjugates its DFT, and a conjugated matrix has the same singular values, so flipping
    changes nothing here.

    A grouped conv (weight [out, in / groups, kh, kw]) is block-diagonal over its groups, so its
    singular values are the union of the groups': the last axis then has groups * min(out / groups, in / groups).
    """
    weight = _check_weight(weight)
    groups = _check_groups(weight, groups)
    h, w = _pair(input_size, "input_size")
    kh, kw = weight.shape[-2:]
    if kh > h or kw > w:
        raise ValueError(f"kernel {kh}x{kw} is larger than the {h}x{w} input")
    if kh == kw == 1:  # the DFT of a 1x1 kernel is the same matrix at every frequency
        with one_thread():
            sv = torch.linalg.svdvals(weight[..., 0, 0].reshape(groups, -1, weight.shape[1]))
        return sv.flatten().sort(descending=True).values.expand(h, w, -1).clone()
    if groups > 1:
        per_group = weight.reshape(groups, -1, *weight.shape[1:])  # [groups, out / groups, in / groups, kh, kw]
        half = torch.fft.rfft2(per_group, s=(h, w)).permute(3, 4, 0, 1, 2)  # [h, w//2 + 1, groups, out/g, in/g]
        if min(half.shape[-2:]) == 1:
            sv_half = half.abs().square().sum((-2, -1)).sqrt()[..., None]
        else:
            with one_thread():
                sv_half = torch.linalg.svdvals(half)
        sv_half = sv_half.flatten(-2).sort(dim=-1, descending=True).values
    else:
        # A real kernel has W^(-xi) = conj(W^(xi)), with the same singular values: do half the frequencies.
        half = torch.fft.rfft2(weight, s=(h, w)).permute(2, 3, 0, 1)  # [h, w//2 + 1, out, in]
        with one_thread():
            sv_half = torch.linalg.svdvals(half)
    rows, cols = torch.arange(h)[:, None], torch.arange(w)[None, :]
    mirrored = cols > w // 2
    return sv_half[torch.where(mirrored, -rows % h, rows), torch.where(mirrored, w - cols, cols)]


def frequency_spectrum(weight: torch.Tensor, input_size: Size, centered: bool = False) -> torch.Tensor:
    """Largest singular value at each frequency, [h, w] (index [0, 0] is the constant; centered=True fftshifts)."""
    top = conv_singular_values_fft(weight, input_size)[..., 0]
    return torch.fft.fftshift(top) if centered else top


def conv_upper_bound(weight: torch.Tensor, input_size: Size, stride: Size = 1) -> float:
    """The paper's bound (its eq. 2): sup over frequencies of |A(xi)|, with stride aliasing; valid for any padding.

    A stride-s layer keeps every s-th output. In the Fourier domain, subsampling folds the s^2 input
    frequencies xi + l * m/s (l in {0..s-1}^2) onto one output frequency xi, so the layer is again
    block-diagonal, with out x (in * s^2) blocks A(xi) = [W^(xi + l m/s)]_l / s. Its norm is the
    sup of |A(xi)| (Parseval). The paper writes the factor as s^-2; with the DFT normalized so that
    Parseval holds, it is 1/s (check: the 1x1 identity kernel with stride s has norm 1, and
    |[1, ..., 1]| / s = 1 while s^-2 would give 1/s). The paper leaves the frequency grid implicit.

    Grid: we use the torus of size m = (smallest multiple of s >= n + k - 1). Any zero-padded conv on
    an n x n input is then a restriction of the circular one on that torus (put the image in a
    corner: no output ever wraps around), so the value is an upper bound for every padding, and it
    is exact for circular padding on the m-torus.
    """
    return grouped_conv_upper_bound(weight, input_size, stride, groups=1)


def grouped_conv_upper_bound(weight: torch.Tensor, input_size: Size, stride: Size = 1, groups: int = 1) -> float:
    """`conv_upper_bound` of a grouped conv (weight [out, in / groups, kh, kw]): the max over its groups.

    The groups see disjoint input channels and write disjoint output channels, so the layer is
    block-diagonal over them and its norm is the largest group's. For a depthwise conv
    (groups = in = out) each block A(xi) is 1 x s^2, so its norm is the Euclidean norm of the s^2
    aliased DFT values divided by s. A 1x1 kernel has the same DFT at every frequency, so its value
    does not depend on the torus, and we take the smallest one (the stride) along that axis.
    """
    weight = _check_weight(weight)
    groups = _check_groups(weight, groups)
    (h, w), (sh, sw) = _pair(input_size, "input_size"), _pair(stride, "stride")
    kh, kw = weight.shape[-2:]
    mh = sh if kh == 1 else math.ceil((h + kh - 1) / sh) * sh
    mw = sw if kw == 1 else math.ceil((w + kw - 1) / sw) * sw
    out, inp = weight.shape[0] // groups, weight.shape[1]
    spectrum = torch.fft.fft2(weight.reshape(groups, out, inp, kh, kw), s=(mh, mw))  # row freq = l1 * (mh/sh) + xi1
    folded = spectrum.reshape(groups, out, inp, sh, mh // sh, sw, mw // sw).permute(0, 4, 6, 1, 2, 3, 5)
    blocks = folded.reshape(groups, mh // sh, mw // sw, out, inp * sh * sw) / math.sqrt(sh * sw)
    blocks = blocks[:, :, : mw // sw // 2 + 1]  # A(-xi) = conj(A(xi)) for a real kernel: half the grid suffices
    return _top_singular_values(blocks, vectors_by_norm=groups > 1).max().item()  # groups=1: as before, by SVD


def _check_shape(input_shape: Sequence[int]) -> tuple[int, ...]:
    """A non-empty tuple of positive ints (one example's shape, no batch dim), else ValueError."""
    shape = tuple(input_shape)
    if not shape or not all(isinstance(d, int) and d > 0 for d in shape):
        raise ValueError(f"input_shape must be positive ints without the batch dim, got {input_shape!r}")
    return shape


def power_iteration_norm(layer: nn.Module, input_shape: Sequence[int], iters: int = 100, seed: int = 0) -> float:
    """Operator norm of the linear part x -> layer(x) - layer(0), by power iteration on J^T J via vjp."""
    input_shape = _check_shape(input_shape)
    if iters < 1:
        raise ValueError(f"iters must be >= 1, got {iters}")
    param = next(layer.parameters(), None)
    dtype = param.dtype if param is not None else torch.get_default_dtype()
    device = param.device if param is not None else None
    generator = torch.Generator().manual_seed(seed)
    v = torch.randn((1, *input_shape), generator=generator, dtype=dtype).to(device)
    with torch.no_grad():
        offset = layer(torch.zeros_like(v))
    with torch.enable_grad(), one_thread():
        for _ in range(iters):
            v = (v / v.norm()).requires_grad_(True)
            out = layer(v) - offset
            (v,) = torch.autograd.grad(out, v, grad_outputs=out.detach())  # vjp: W^T (W v)
    with torch.no_grad():
        return (layer(v / v.norm()) - offset).norm().item()


def fc_bounds(linear: nn.Linear) -> tuple[float, float]:
    """(largest, smallest) singular value of a fully connected layer's weight (smallest of min(out, in))."""
    if not isinstance(linear, nn.Linear):
        raise ValueError(f"fc_bounds needs an nn.Linear, got {type(linear).__name__}")
    with one_thread():
        sv = torch.linalg.svdvals(linear.weight.detach())
    return sv[0].item(), sv[-1].item()


def _maxpool_factor(pool: nn.MaxPool2d) -> float:
    """Lipschitz constant of max pooling: sqrt(max number of windows that share one pixel)."""
    # |max a - max b| <= max |a - b|, so |dy|^2 <= sum over windows of |r|^2 in it <= count * |r|^2,
    # with equality for a spike at one pixel that wins every window it is in. The paper's factor 1
    # (its Jacobian "is a projection") holds when windows do not overlap (kernel <= stride).
    kernel, stride, dilation = (_pair(v, "pool size") for v in (pool.kernel_size, pool.stride, pool.dilation))
    count = [math.ceil(k / s) if d == 1 else k for k, s, d in zip(kernel, stride, dilation)]
    return math.sqrt(count[0] * count[1])


def _avgpool_factor(pool: nn.Module, input_shape: Sequence[int]) -> float:
    """Upper bound sqrt(max row sum * max column sum) (Schur test) of a linear average pooling."""
    x = torch.ones((1, *input_shape), requires_grad=True)
    with torch.enable_grad():
        (column_sums,) = torch.autograd.grad(pool(x).sum(), x)
    return math.sqrt(column_sums.max().item())  # rows are averages, so each row sums to <= 1


def _leaves(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The leaf layers of a (possibly nested) nn.Sequential, in order, with their dotted names."""
    if not isinstance(model, nn.Sequential):
        raise ValueError(f"layer_bounds needs an nn.Sequential, got {type(model).__name__}")
    return [(name, m) for name, m in model.named_modules() if name and not list(m.children())]


def _fc_row(layer: nn.Linear, shape: tuple[int, ...], power_iters: int) -> dict:
    """Table entries of a fully connected layer."""
    top, bottom = fc_bounds(layer)
    injective = layer.out_features >= layer.in_features
    return dict(kind="fc", weight_shape="x".join(map(str, layer.weight.shape)), paper_bound=top, exact_norm=top,
                power_norm=power_iteration_norm(layer, shape, power_iters), lower_bound=bottom if injective else 0.0)


def _conv_row(layer: nn.Conv2d, shape: tuple[int, ...], power_iters: int) -> dict:
    """Table entries of a convolution layer (grouped ones too: the max over the groups)."""
    if layer.dilation != (1, 1) or layer.padding_mode != "zeros":
        raise ValueError(f"only zero-padded convolutions with dilation=1 are supported, got {layer}")
    w = layer.weight.detach()
    row = dict(kind="conv", weight_shape="x".join(map(str, w.shape)), stride=str(layer.stride),
               padding=str(layer.padding),
               paper_bound=grouped_conv_upper_bound(w, shape[1:], layer.stride, layer.groups),
               power_norm=power_iteration_norm(layer, shape, power_iters))
    if layer.stride == (1, 1) and w.shape[-2] <= shape[-2] and w.shape[-1] <= shape[-1]:
        sv = conv_singular_values_fft(w, shape[1:], layer.groups)
        injective = w.shape[0] // layer.groups >= w.shape[1]
        row.update(exact_norm=sv.max().item(), lower_bound=sv[..., -1].min().item() if injective else 0.0)
    return row


def _row(layer: nn.Module, shape: tuple[int, ...], power_iters: int) -> dict:
    """Table entries of one layer, by kind."""
    if isinstance(layer, nn.Linear):
        return _fc_row(layer, shape, power_iters)
    if isinstance(layer, nn.Conv2d):
        return _conv_row(layer, shape, power_iters)
    if isinstance(layer, tuple(CONTRACTION)):
        return dict(kind="nonlinearity", paper_bound=CONTRACTION[type(layer)])
    if isinstance(layer, nn.MaxPool2d):
        return dict(kind="maxpool", stride=str(layer.stride), paper_bound=_maxpool_factor(layer))
    if isinstance(layer, (nn.AvgPool2d, nn.AdaptiveAvgPool2d)):
        return dict(kind="avgpool", paper_bound=_avgpool_factor(layer, shape))
    if isinstance(layer, ISOMETRIES):
        return dict(kind="identity", paper_bound=1.0)
    raise ValueError(f"no Lipschitz bound known for {type(layer).__name__}")


def layer_bounds(model: nn.Sequential, input_shape: Sequence[int], power_iters: int = 100):
    """A pandas DataFrame, one row per layer: kind, shapes, paper_bound, exact_norm, power_norm, lower_bound.

    paper_bound: the FFT bound for a conv, the top singular value for an FC layer, the contraction
    factor of a nonlinearity or pooling. exact_norm: SVD for FC; for a stride-1 conv, the FFT norm with
    circular padding on the layer's own input grid. That is a different operator from the zero-padded
    layer, so it can differ slightly from power_norm, and even exceed paper_bound (a larger grid).
    power_norm: power iteration on the layer as run (zero padding, any stride), a lower estimate of its
    norm. lower_bound: the lower frame bound min |Wx| / |x| (0 when the layer has a null space), for FC
    layers and, with circular padding like exact_norm, for stride-1 convs.
    """
    import pandas as pd

    x = torch.zeros((1, *_check_shape(input_shape)))
    rows = []
    for name, layer in _leaves(model):
        shape = tuple(x.shape[1:])
        with torch.no_grad():
            x = layer(x)
        nan = float("nan")
        row = dict(name=name, layer=type(layer).__name__, kind="", weight_shape="", stride="", padding="",
                   input_shape=shape, output_shape=tuple(x.shape[1:]),
                   paper_bound=nan, exact_norm=nan, power_norm=nan, lower_bound=nan)
        try:
            row.update(_row(layer, shape, power_iters))
        except ValueError as error:
            raise ValueError(f"layer {name}: {error}") from error
        rows.append(row)
    return pd.DataFrame(rows)


def global_upper_bound(table, column: str = "paper_bound") -> float:
    """Upper Lipschitz bound of the whole network: the product of the per-layer bounds in `column`."""
    return math.prod(float(v) for v in table[column])


def logit_margin(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Per example, top logit minus runner-up, [batch]."""
    top2 = model(x).topk(2, dim=1).values
    return top2[:, 0] - top2[:, 1]


def local_lipschitz(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Per example, |grad_x (top logit - runner-up)|, [batch]: the margin's local slope at x (model in eval())."""
    x = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(logit_margin(model, x).sum(), x)  # examples are independent in eval()
    return grad.flatten(1).norm(dim=1)


def certified_radius(model: nn.Module, x: torch.Tensor, lipschitz_constant: float | torch.Tensor) -> torch.Tensor:
    """Per example, margin / (sqrt(2) L): no perturbation smaller than this changes the predicted class.

    L bounds the Lipschitz constant of the logit map z(x) (e.g. global_upper_bound). For the top class
    a and any other class b, g = z_a - z_b has g(x) >= margin and Lipschitz constant
    <= |e_a - e_b| L = sqrt(2) L, so g(x + r) >= margin - sqrt(2) L |r| > 0 whenever
    |r| < margin / (sqrt(2) L). With the local constants of `local_lipschitz` instead, margin / L_local
    is only a first-order estimate of the distance to the boundary, not a certificate.
    """
    L = torch.as_tensor(lipschitz_constant, dtype=x.dtype)
    if (L <= 0).any():
        raise ValueError(f"lipschitz_constant must be positive, got {lipschitz_constant}")
    with torch.no_grad():
        return logit_margin(model, x) / (math.sqrt(2) * L)


def robustness_table(model: nn.Module, x: torch.Tensor, y: torch.Tensor, x_adv: torch.Tensor,
                     lipschitz_constant: float):
    """Per image, a DataFrame: the certified radius (global L) and local estimate beside the attack's |r|.

    Columns: correct (f(x) == y), flipped (f(x_adv) != f(x)), margin (top logit minus runner-up at x),
    local_slope (|grad margin| at x), certified (margin / (sqrt(2) L), a lower bound on the distance to
    any other class), local_estimate (margin / local_slope: first-order distance, not a certificate),
    attack_norm (|x_adv - x|_2, not the paper's |r| / sqrt(n)) and secant_slope (margin / attack_norm:
    where flipped, a lower bound on the Lipschitz constant of some logit difference z_a - z_c).
    """
    import pandas as pd

    if x_adv.shape != x.shape or y.shape != x.shape[:1]:
        raise ValueError(f"x {tuple(x.shape)}, x_adv {tuple(x_adv.shape)} and y {tuple(y.shape)} do not match")
    with torch.no_grad():
        predicted, predicted_adv = model(x).argmax(1), model(x_adv).argmax(1)
        margin = logit_margin(model, x)
        attack_norm = (x_adv - x).flatten(1).norm(dim=1)
    slope = local_lipschitz(model, x)
    radius = certified_radius(model, x, lipschitz_constant)
    columns = dict(correct=predicted == y, flipped=predicted_adv != predicted, margin=margin, local_slope=slope,
                   certified=radius, local_estimate=margin / slope, attack_norm=attack_norm,
                   secant_slope=margin / attack_norm)
    return pd.DataFrame({name: value.detach().cpu().numpy() for name, value in columns.items()})


# ----------------------------------------------------------------------------------------------
# What we found: the paper's claims of Section 4.3 (Table 5), each with a computed verdict
# ----------------------------------------------------------------------------------------------

TOLERANCE = 1e-5  # relative slack for float rounding when a norm is compared with its bound


@dataclass(frozen=True)
class StridedCheck:
    """One strided convolution: its actual norm (power iteration) and `conv_upper_bound` (blocks scaled by 1/s).

    The paper's formula scales every block by s^-2 instead, so taken literally it gives bound / s.
    """
    stride: int
    actual_norm: float
    bound: float

    def __post_init__(self) -> None:
        if isinstance(self.stride, bool) or not isinstance(self.stride, int) or self.stride < 2:
            raise ValueError(f"stride must be an int >= 2 (stride 1 has no aliasing), got {self.stride!r}")
        for name in ("actual_norm", "bound"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be finite and positive, got {value!r}")

    @property
    def literal_bound(self) -> float:
        """The paper's formula taken literally (s^-2 on every block): our bound divided by s."""
        return self.bound / self.stride


def _check_frames(frames: Mapping[str, object], columns: Sequence[str], what: str) -> None:
    import pandas as pd

    if not isinstance(frames, Mapping) or not frames:
        raise ValueError(f"{what} must be a non-empty dict {{model name: DataFrame}}")
    for name, frame in frames.items():
        if not isinstance(frame, pd.DataFrame):
            raise ValueError(f"{what}[{name!r}] must be a DataFrame, got {type(frame).__name__}")
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise ValueError(f"{what}[{name!r}] lacks the columns {missing}")


def _table5_text() -> str:
    values = ", ".join(f"{row['upper_bound']:g}" for row in paper.TABLE5)
    return f"AlexNet, Conv. 1-5 and FC 1-3: {values} (the ICLR version's, arXiv v4; v1's table is garbled)"


def findings(tables: Mapping[str, object], robust: Mapping[str, object], strided: StridedCheck,
             pooling: Mapping[str, float], alexnet_bounds: Sequence[float] | None = None) -> list[Finding]:
    """The claims of the paper's Section 4.3 that the chapter tests, each with a computed verdict.

    tables: {model: `layer_bounds(model, ...)`}; robust: {model: `robustness_table(...)` rows (correct and
    flipped by the attack)}, models among `tables`, whose global bound is the product of the
    `paper_bound` column; strided: a strided convolution checked against its bound; pooling: {label:
    Lipschitz factor} of max-pooling layers (e.g. `layer_bounds(nn.Sequential(pool), ...)`); alexnet_bounds:
    our bounds of torchvision's AlexNet, Conv. 1-5 and FC 1-3 (None when its weights are absent).
    """
    _check_frames(tables, ("kind", "paper_bound", "power_norm"), "tables")
    _check_frames(robust, ("certified", "attack_norm", "secant_slope"), "robust")
    if not set(robust) <= set(tables):
        raise ValueError(f"robust has models {sorted(set(robust) - set(tables))} that tables lack")
    if not isinstance(strided, StridedCheck):
        raise ValueError(f"strided must be a spectral.StridedCheck, got {type(strided).__name__}")
    if not isinstance(pooling, Mapping) or not pooling:
        raise ValueError("pooling must be a non-empty dict {label: Lipschitz factor}")
    if not all(math.isfinite(v) and v > 0 for v in pooling.values()):
        raise ValueError(f"pooling factors must be finite and positive, got {dict(pooling)}")
    if alexnet_bounds is not None:
        alexnet_bounds = [float(v) for v in alexnet_bounds]
        if len(alexnet_bounds) != len(paper.TABLE5) or not all(math.isfinite(v) and v > 0 for v in alexnet_bounds):
            raise ValueError(f"alexnet_bounds must be {len(paper.TABLE5)} positive numbers (Conv. 1-5, FC 1-3)")

    import pandas as pd

    linear = pd.concat([t[t["kind"].isin(["conv", "fc"])] for t in tables.values()])
    if linear.empty:
        raise ValueError("tables have no conv or fc layers")
    ratio = linear["power_norm"] / linear["paper_bound"]
    valid = bool((linear["power_norm"] <= linear["paper_bound"] * (1 + TOLERANCE)).all())
    found = [Finding(
        "Each linear layer's Lipschitz constant is at most its upper frame bound (operator norm; "
        "for a convolution, the sup over frequencies)",
        "Section 4.3: the instability of each layer is measured by the upper frame bound of its linear operator",
        f"power iteration on the layer as run stays below the bound on {int((ratio <= 1 + TOLERANCE).sum())} of "
        f"{len(linear)} conv/FC layers of {len(tables)} models (power / bound {ratio.min():.3f} to {ratio.max():.3f})",
        valid, key="layer-bound-valid")]

    found.append(Finding(
        "A strided convolution's norm is the sup of |A(xi)|, its blocks scaled by s^-2",
        "Section 4.3's convolution formula, as the book reads it (the arXiv v1 text lost its symbols)",
        f"stride {strided.stride}: actual norm {strided.actual_norm:.3f}; the formula with s^-2 gives "
        f"{strided.literal_bound:.3f}, with 1/s {strided.bound:.3f}",
        strided.literal_bound >= strided.actual_norm * (1 - TOLERANCE),
        "with s^-2 the formula falls below the actual norm, so it is no bound; 1/s makes it one"
        if strided.literal_bound < strided.actual_norm * (1 - TOLERANCE) else "", key="strided-formula"))

    over = {label: factor for label, factor in pooling.items() if factor > 1 + TOLERANCE}
    found.append(Finding(
        "Max-pooling layers are contractive", "\"The max-pooling layers are contractive\" (Section 4.3)",
        "; ".join(f"{label}: factor {factor:.3g}" for label, factor in pooling.items()),
        not over, "" if not over else "only with non-overlapping windows: where windows overlap "
                                      f"({', '.join(over)}) one pixel can win several of them",
        key="max-pool-contractive"))

    if alexnet_bounds is None:
        found.append(Finding("Table 5: AlexNet's per-layer upper bounds", _table5_text(), "–", None,
                             "needs torchvision's pretrained AlexNet weights, which were not on the machine that computed "
                             "this page (the book builds offline; Colab downloads them)",
                             key="table5-alexnet"))
    else:
        paper_values = [row["upper_bound"] for row in paper.TABLE5]
        same_order = all(abs(math.log10(o / p)) < 1 for o, p in zip(alexnet_bounds, paper_values))
        found.append(Finding(
            "Table 5: AlexNet's per-layer upper bounds", _table5_text(),
            "torchvision's AlexNet: " + ", ".join(f"{v:.3g}" for v in alexnet_bounds), same_order,
            "a different AlexNet (other filter counts): the verdict compares orders of magnitude (within 10x), "
            "not digits", key="table5-alexnet"))

    if alexnet_bounds is not None:
        first = {"torchvision AlexNet": alexnet_bounds[0]}
        where = ""
    else:
        first = {name: float(t.loc[t["kind"].isin(["conv", "fc"]), "paper_bound"].iloc[0])
                 for name, t in tables.items() if t["kind"].isin(["conv", "fc"]).any()}
        where = "tested on our MNIST models' first layers (AlexNet's needs its weights)"
    found.append(Finding(
        "Instability can appear as soon as the first layer: its upper bound exceeds 1",
        f"\"instabilities can appear as soon as in the first convolutional layer\" "
        f"(Conv. 1 bound {paper.TABLE5[0]['upper_bound']:g}, the ICLR version's)",
        "first-layer bound " + "; ".join(f"{name} {v:.3g}" for name, v in first.items()),
        all(v > 1 for v in first.values()), where, key="first-layer-unstable"))

    parts, holds = [], True
    for name, ok in robust.items():
        if ok.empty:
            raise ValueError(f"robust[{name!r}] has no rows: no image to check the certificate on")
        bound = math.sqrt(2) * global_upper_bound(tables[name])
        inside = int((ok["certified"] <= ok["attack_norm"] * (1 + TOLERANCE)).sum())
        slower = bool((ok["secant_slope"] <= bound * (1 + TOLERANCE)).all())
        holds = holds and inside == len(ok) and slower
        parts.append(f"{name}: certified radius <= attack's |r| on {inside} of {len(ok)} images, "
                     f"median attack / certified {(ok['attack_norm'] / ok['certified']).median():.0f}x")
    found.append(Finding(
        "The product of the layer bounds bounds the whole network",
        "Section 4.3: instability can be partly explained by the upper Lipschitz constants of the layers",
        "; ".join(parts), holds,
        "" if holds else "a perturbation smaller than the certified radius changed a prediction", key="product-bound"))
    return found
