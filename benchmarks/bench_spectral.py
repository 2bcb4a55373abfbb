"""Exact spectral norm of a 3x3, 384 -> 384 convolution on 13x13 inputs: FFT vs power iteration.

Run: .venv/bin/python benchmarks/bench_spectral.py   (goal: the FFT norm in <= 10 s on CPU)
The circular-padding layer is exactly the operator whose singular values the FFT computes, so power
iteration on it must converge to the FFT norm; the zero-padded layer (what nn.Conv2d runs by
default) is bounded above by the paper's bound. The bound (torus 15x15, see conv_upper_bound) is not
an upper bound for the 13x13 circular layer, a different operator: it may sit a hair below its norm.
"""
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from lib.spectral import conv_singular_values_fft, conv_upper_bound, power_iteration_norm  # noqa: E402

SIZE, CHANNELS, KERNEL = 13, 384, 3


def timed(fn):
    """(result, seconds) of fn()."""
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def main() -> None:
    torch.set_flush_denormal(True)
    torch.manual_seed(0)
    circular = nn.Conv2d(CHANNELS, CHANNELS, KERNEL, padding=1, padding_mode="circular")
    zero_padded = nn.Conv2d(CHANNELS, CHANNELS, KERNEL, padding=1)
    zero_padded.load_state_dict(circular.state_dict())
    weight, shape = circular.weight.detach(), (CHANNELS, SIZE, SIZE)

    values, fft_time = timed(lambda: conv_singular_values_fft(weight, SIZE))
    exact = values.max().item()
    rows = [("FFT, all singular values (circular)", fft_time, exact, "exact")]
    bound, bound_time = timed(lambda: conv_upper_bound(weight, SIZE, 1))
    rows.append(("paper bound (any zero padding)", bound_time, bound, f"{bound / exact - 1:+.2e} vs FFT"))
    for iters in (10, 100, 1000):
        norm, seconds = timed(lambda: power_iteration_norm(circular, shape, iters=iters))
        agreement = f"{norm / exact - 1:+.2e} vs FFT"
        rows.append((f"power iteration, circular, {iters} iters", seconds, norm, agreement))
    norm, seconds = timed(lambda: power_iteration_norm(zero_padded, shape, iters=100))
    rows.append(("power iteration, zero-padded, 100 iters", seconds, norm, f"{norm / bound - 1:+.2e} vs bound"))

    print(f"conv {KERNEL}x{KERNEL}x{CHANNELS}x{CHANNELS} on {SIZE}x{SIZE}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; {values.numel()} singular values")
    print(f"{'method':42s} {'seconds':>8s} {'norm':>10s}  agreement")
    for name, seconds, value, note in rows:
        print(f"{name:42s} {seconds:8.2f} {value:10.5f}  {note}")


if __name__ == "__main__":
    main()
