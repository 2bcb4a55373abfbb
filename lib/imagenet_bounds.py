"""Table 5 (Section 4.3) on a pretrained ImageNet network: per-layer upper Lipschitz bounds of EfficientNet-Lite.

Every convolution of timm's `tf_efficientnet_lite*` is followed by an eval-mode batch norm, an affine
map per channel, so we fold it into the convolution (W' = W * gamma / sqrt(running_var + eps) per
output channel; the offset does not change a Lipschitz constant) and bound the folded layer with the
paper's FFT bound, depthwise convolutions as the max over their groups (`spectral.grouped_conv_upper_bound`).
Beside each bound: an exact norm where one exists (stride-1 convs with circular padding, the
classifier by SVD) and power iteration on the conv and its batch norm as the network runs them
(TensorFlow "same" padding included), a lower estimate of the layer's true norm. ReLU6 and ReLU
have factor 1 and are not rows; the input normalisation x -> (x - mean) / std is a row with factor
1 / std, so the global bound is in [0,1] pixel units; the global average pool over h x w has factor
1 / sqrt(h w). A block with a skip connection, x -> x + g(x), has bound 1 + (product of g's layers);
the global bound is the product over the blocks (`block_bounds`, `global_bound`).
"""
from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from . import DATA_DIR
from .data import atomic_write_bytes
from .spectral import (
    TOLERANCE,
    _avgpool_factor,
    conv_singular_values_fft,
    fc_bounds,
    grouped_conv_upper_bound,
    power_iteration_norm,
)

# Measured on lite0 at 224x224 on one core: one float64 iteration through all 49 convs costs ~0.33 s,
# so the table took 111 s at 400. Power iteration creeps up like 1 - c / iters on the
# large depthwise convs, whose top singular values are many and close; at 400 iterations every row
# was within 0.1% of its value at 800 (block 2.0's 5x5 /2 depthwise moved most), at 200 within 0.4%.
POWER_ITERS = 400
RESULTS_DIR = DATA_DIR / "results" / "imagenet"
LINEAR_KINDS = ("conv", "fc")
ACTIVATION_FACTORS = {nn.Identity: 1.0, nn.ReLU: 1.0, nn.ReLU6: 1.0}  # sup |rho'| of the activations we accept
FLOAT_COLUMNS = ("paper_bound", "exact_norm", "power_norm")


def fold_batch_norm(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias (float64) of one conv equal to conv followed by bn in eval mode."""
    if not isinstance(conv, nn.Conv2d) or not isinstance(bn, nn.BatchNorm2d):
        raise ValueError(f"need an nn.Conv2d and an nn.BatchNorm2d, got {type(conv).__name__}, {type(bn).__name__}")
    if bn.num_features != conv.out_channels or bn.running_var is None:
        raise ValueError(f"batch norm {bn} does not fit conv {conv} (or keeps no running statistics)")
    var, mean = bn.running_var.detach().double(), bn.running_mean.detach().double()
    gamma = bn.weight.detach().double() if bn.weight is not None else torch.ones_like(var)
    beta = bn.bias.detach().double() if bn.bias is not None else torch.zeros_like(var)
    scale = gamma / (var + bn.eps).sqrt()
    bias = conv.bias.detach().double() if conv.bias is not None else torch.zeros_like(var)
    return conv.weight.detach().double() * scale[:, None, None, None], (bias - mean) * scale + beta


def _affine_batch_norm(bn: nn.BatchNorm2d) -> nn.BatchNorm2d:
    """A plain eval-mode copy of bn: timm's BatchNormAct2d without its activation."""
    plain = nn.BatchNorm2d(bn.num_features, eps=bn.eps, affine=bn.affine).to(bn.running_var.dtype)
    plain.load_state_dict({k: v for k, v in bn.state_dict().items() if k in plain.state_dict()})
    return plain.eval()


def _float64(*layers: nn.Module) -> nn.Sequential:
    """A float64 copy of the layers in sequence, for power iteration.

    In float32, layer(v) - layer(0) cancels the batch norm's offset, which dwarfs the output of a
    unit-norm v spread over 10^5 entries: on lite0 that put power_norm 1.4e-5 above exact 1x1 norms.
    """
    return nn.Sequential(*(copy.deepcopy(layer) for layer in layers)).double()


def _activation(bn: nn.Module) -> str:
    """Name of the activation timm runs after a batch norm ('' for none), else ValueError."""
    act, drop = getattr(bn, "act", nn.Identity()), getattr(bn, "drop", nn.Identity())
    if type(act) not in ACTIVATION_FACTORS or not isinstance(drop, nn.Identity):
        raise ValueError(f"no Lipschitz factor known for the activation {act} (after {type(bn).__name__})")
    return "" if isinstance(act, nn.Identity) else type(act).__name__


def _conv_label(role: str, conv: nn.Conv2d) -> str:
    kh, kw = conv.kernel_size
    stride = f" /{conv.stride[0]}" if conv.stride != (1, 1) else ""
    return f"{role} {kh}x{kw}{stride}"


def _check_block(block: nn.Module, where: str) -> None:
    """ValueError unless the block is a plain Lite block: no squeeze-excite, anti-aliasing or space-to-depth."""
    extras = [name for name in ("se", "aa") if not isinstance(getattr(block, name, nn.Identity()), nn.Identity)]
    if getattr(block, "conv_s2d", None) is not None:
        extras.append("conv_s2d")
    if extras:
        raise ValueError(f"block {where} has {extras}: only EfficientNet-Lite blocks (no SE, no s2d) are supported")


def _linear_layers(network: nn.Module) -> list[tuple[str, str, bool, nn.Module, nn.Module | None]]:
    """(block, label, residual, layer, batch norm or None) of each linear layer of a timm EfficientNet-Lite."""
    needed = ("conv_stem", "bn1", "blocks", "conv_head", "bn2", "global_pool", "classifier")
    missing = [name for name in needed if not hasattr(network, name)]
    if missing:
        raise ValueError(f"expected a timm EfficientNet-Lite (tf_efficientnet_lite*), it lacks {missing}")
    layers = [("stem", _conv_label("stem", network.conv_stem), False, network.conv_stem, network.bn1)]
    roles = {"DepthwiseSeparableConv": (("depthwise", "conv_dw", "bn1"), ("project", "conv_pw", "bn2")),
             "InvertedResidual": (("expand", "conv_pw", "bn1"), ("depthwise", "conv_dw", "bn2"),
                                  ("project", "conv_pwl", "bn3"))}
    for i, stage in enumerate(network.blocks):
        for j, block in enumerate(stage):
            where = f"{i}.{j}"
            if type(block).__name__ not in roles:
                raise ValueError(f"block {where} is a {type(block).__name__}: only {sorted(roles)} are supported")
            _check_block(block, where)
            for role, conv, bn in roles[type(block).__name__]:
                conv = getattr(block, conv)
                layers.append((where, f"block {where} {_conv_label(role, conv)}", bool(block.has_skip), conv,
                               getattr(block, bn)))
    layers.append(("head", _conv_label("head", network.conv_head), False, network.conv_head, network.bn2))
    layers.append(("pool", "global average pool", False, network.global_pool, None))
    layers.append(("classifier", "classifier", False, network.classifier, None))
    return layers


def _shapes(network: nn.Module, modules: list[nn.Module], input_size: int) -> dict[int, tuple]:
    """{id(module): (input shape, output shape)} without the batch dim, from one forward pass on zeros."""
    shapes = {}

    def record(module, inputs, output):
        shapes[id(module)] = (tuple(inputs[0].shape[1:]), tuple(output.shape[1:]))

    hooks = [m.register_forward_hook(record) for m in modules]
    try:
        param = next(network.parameters())
        with torch.no_grad():
            network(torch.zeros(1, 3, input_size, input_size, dtype=param.dtype, device=param.device))
    finally:
        for hook in hooks:
            hook.remove()
    return shapes


def _conv_row(conv: nn.Conv2d, bn: nn.BatchNorm2d, shape: tuple, power_iters: int) -> dict:
    """Bound, exact circular norm (stride 1) and power iteration of conv + its batch norm."""
    if conv.dilation != (1, 1) or conv.padding_mode != "zeros":
        raise ValueError(f"only zero-padded convolutions with dilation=1 are supported, got {conv}")
    weight, _ = fold_batch_norm(conv, bn)
    row = dict(kind="conv", groups=conv.groups,
               paper_bound=grouped_conv_upper_bound(weight, shape[1:], conv.stride, conv.groups),
               power_norm=power_iteration_norm(_float64(conv, _affine_batch_norm(bn)), shape, power_iters))
    if conv.stride == (1, 1) and weight.shape[-2] <= shape[-2] and weight.shape[-1] <= shape[-1]:
        row["exact_norm"] = conv_singular_values_fft(weight, shape[1:], conv.groups).max().item()
    return row


def lite_layer_bounds(model: nn.Module, input_size: int = 224, power_iters: int = POWER_ITERS):
    """A pandas DataFrame, one row per linear layer of an EfficientNet-Lite (plus normalisation and pool rows).

    `model` is `lib.imagenet.load(name)` (a `Normalised` wrapper: a first row "normalisation" with
    factor 1 / std) or the bare timm network. Columns: block ("stem", "3.1", "head", ...), label, kind
    (normalisation, conv, avgpool, fc), weight_shape (of the folded conv), stride, groups,
    input_shape, output_shape, activation (after the layer; factor 1), residual (the layer is inside
    a block with a skip connection), paper_bound, exact_norm (NaN where none), power_norm (NaN for
    normalisation and pool). exact_norm of a conv is that of the circular conv on its own input grid,
    a different operator from the zero-padded layer on a different frequency grid than paper_bound's,
    so it may exceed paper_bound slightly; power_norm may not. Deterministic: power iteration starts
    from a seeded vector.
    """
    import pandas as pd

    if isinstance(input_size, bool) or not isinstance(input_size, int) or input_size < 1:
        raise ValueError(f"input_size must be a positive int, got {input_size!r}")
    if isinstance(power_iters, bool) or not isinstance(power_iters, int) or power_iters < 1:
        raise ValueError(f"power_iters must be a positive int, got {power_iters!r}")
    network = getattr(model, "network", model)
    layers = _linear_layers(network)
    shapes = _shapes(network, [layer for *_, layer, _ in layers], input_size)
    nan = float("nan")
    rows = []
    if network is not model:
        mean, std = (getattr(model, name).detach().flatten().double().tolist() for name in ("mean", "std"))
        rows.append(dict(block="input", label=f"normalisation (x - {_values(mean)}) / {_values(std)}",
                         kind="normalisation", weight_shape="", stride="", groups="",
                         input_shape=(3, input_size, input_size), output_shape=(3, input_size, input_size),
                         activation="", residual=False, paper_bound=1 / min(std), exact_norm=nan,
                         power_norm=nan))
    for block, label, residual, layer, bn in layers:
        shape, output_shape = shapes[id(layer)]
        row = dict(block=block, label=label, kind="", weight_shape="", stride="", groups="", input_shape=shape,
                   output_shape=output_shape, activation="", residual=residual, paper_bound=nan, exact_norm=nan,
                   power_norm=nan)
        if isinstance(layer, nn.Conv2d):
            row.update(_conv_row(layer, bn, shape, power_iters), activation=_activation(bn),
                       weight_shape="x".join(map(str, layer.weight.shape)), stride=layer.stride[0])
        elif isinstance(layer, nn.Linear):
            top, _ = fc_bounds(layer)
            row.update(kind="fc", weight_shape="x".join(map(str, layer.weight.shape)), paper_bound=top,
                       exact_norm=top, power_norm=power_iteration_norm(_float64(layer), shape, power_iters))
        else:
            if getattr(layer, "pool_type", "avg") != "avg":
                raise ValueError(f"only global average pooling is supported, got {layer}")
            row.update(kind="avgpool", label=f"global average pool {shape[1]}x{shape[2]}",
                       paper_bound=_avgpool_factor(layer, shape))
        rows.append(row)
    return pd.DataFrame(rows)


def _values(values: list[float]) -> str:
    """'0.5' when all channels share a value, else '0.485, 0.456, 0.406'."""
    return f"{values[0]:g}" if len(set(values)) == 1 else ", ".join(f"{v:g}" for v in values)


def _check_table(table) -> None:
    missing = [c for c in ("block", "label", "kind", "residual", *FLOAT_COLUMNS) if c not in table.columns]
    if missing or table.empty:
        raise ValueError(f"expected a lite_layer_bounds table, got one lacking {missing or 'rows'}")


def block_bounds(table):
    """A pandas DataFrame, one row per block: product of its layers, residual, bound (1 + product if residual)."""
    import pandas as pd

    _check_table(table)
    rows = []
    for block, layers in table.groupby("block", sort=False):
        residual = bool(layers["residual"].iloc[0])
        if (layers["residual"] != residual).any():
            raise ValueError(f"block {block!r} mixes residual and non-residual rows")
        product = math.prod(float(v) for v in layers["paper_bound"])
        label = f"block {block}" if block[0].isdigit() else layers["label"].iloc[0]  # the others are one layer each
        rows.append(dict(block=block, label=label, layers=len(layers), product=product, residual=residual,
                         bound=1 + product if residual else product))
    blocks = pd.DataFrame(rows)
    blocks["cumulative"] = blocks["bound"].cumprod()
    return blocks


def global_bound(table) -> float:
    """Upper Lipschitz bound of the whole network: the product over blocks, a residual block counting 1 + product."""
    return math.prod(float(v) for v in block_bounds(table)["bound"])


def checks(table) -> dict:
    """Counts of conv/FC rows with power_norm (and exact_norm where defined) within the bound; power / bound range."""
    _check_table(table)
    linear = table[table["kind"].isin(LINEAR_KINDS)]
    if linear.empty:
        raise ValueError("the table has no conv or fc rows")
    limit = linear["paper_bound"] * (1 + TOLERANCE)
    exact = linear["exact_norm"].notna()
    ratio = linear["power_norm"] / linear["paper_bound"]
    return dict(linear_layers=len(linear), power_within_bound=int((linear["power_norm"] <= limit).sum()),
                exact_defined=int(exact.sum()),
                exact_within_bound=int((linear.loc[exact, "exact_norm"] <= limit[exact]).sum()),
                power_ratio_min=float(ratio.min()), power_ratio_max=float(ratio.max()))


def _plain(value):
    """A JSON value: NaN -> None, tuples -> lists, numpy scalars -> Python ones."""
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def save_table(table, path: Path | str, provenance: Mapping) -> Path:
    """Write the table and the caller's provenance (e.g. weights sha256, versions) as JSON, atomically."""
    _check_table(table)
    if not isinstance(provenance, Mapping):
        raise ValueError(f"provenance must be a dict, got {type(provenance).__name__}")
    try:
        head = json.dumps(dict(provenance), allow_nan=False)
    except (TypeError, ValueError) as error:
        raise ValueError(f"provenance is not plain JSON data: {error}") from error
    rows = [json.dumps([_plain(v) for v in row], allow_nan=False) for row in table.itertuples(index=False)]
    payload = (f'{{"provenance": {head},\n "columns": {json.dumps(list(table.columns))},\n'
               f' "rows": [\n  ' + ",\n  ".join(rows) + "\n ]}\n")  # one row per line: readable diffs
    path = Path(path)
    atomic_write_bytes(path, payload.encode())
    return path


def load_table(path: Path | str):
    """The (table, provenance) that `save_table` wrote; ValueError if the file is not such a record."""
    import pandas as pd

    record = json.loads(Path(path).read_text())
    if not isinstance(record, dict) or not {"provenance", "columns", "rows"} <= set(record):
        raise ValueError(f"{path}: not a table written by save_table")
    table = pd.DataFrame(record["rows"], columns=record["columns"])
    for column in ("input_shape", "output_shape"):
        if column in table:
            table[column] = [tuple(v) for v in table[column]]
    for column in FLOAT_COLUMNS:
        if column in table:
            table[column] = pd.to_numeric(table[column], errors="raise").astype(float)
    return table, record["provenance"]


def results_path(name: str) -> Path:
    """Where the committed table of network `name` lives."""
    return RESULTS_DIR / f"table5_{name}.json"


def compute_lite_table(name: str = "efficientnet-lite0", input_size: int = 224, power_iters: int = POWER_ITERS):
    """(table, provenance) for pretrained EfficientNet-Lite `name`: weights' info, versions, settings, seconds taken."""
    import dataclasses
    import importlib.metadata

    from . import imagenet, one_thread

    model = imagenet.load(name)
    start = time.perf_counter()
    with one_thread():
        table = lite_layer_bounds(model, input_size, power_iters)
    seconds = time.perf_counter() - start
    provenance = dict(weights=dataclasses.asdict(imagenet.info(name)), torch=torch.__version__,
                      timm=importlib.metadata.version("timm"), power_iters=power_iters, input_size=input_size,
                      threads=1, seconds=round(seconds, 1), global_bound=global_bound(table))
    return table, provenance


def write_lite_table(name: str = "efficientnet-lite0", input_size: int = 224, power_iters: int = POWER_ITERS) -> Path:
    """Compute the table of pretrained `name` and commit it to `results_path(name)` with its provenance."""
    table, provenance = compute_lite_table(name, input_size, power_iters)
    return save_table(table, results_path(name), provenance)
