import matplotlib
import pytest
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from lib import cache, widgets


def test_slider_draws_default_figure_once(monkeypatch):
    calls = []

    def draw(c, k):
        calls.append((c, k))
        return plt.figure()

    monkeypatch.setattr(widgets, "display", lambda *a, **k: None)
    widgets.slider(draw, defaults={"c": 1.0}, c=[0.1, 1.0, 10.0], k=[1, 2, 3])
    assert calls == [(1.0, 2)]  # the given default, and the middle value where none is given


def test_slider_rejects_bad_defaults():
    with pytest.raises(ValueError, match="not among its values"):
        widgets.slider(lambda c: plt.figure(), defaults={"c": 5}, c=[1, 2])
    with pytest.raises(ValueError, match="at least one keyword"):
        widgets.slider(lambda: plt.figure())


def test_cache_computes_once_and_writes_atomically(tmp_path, monkeypatch):
    monkeypatch.setattr(cache, "CACHE_DIR", tmp_path)
    calls = []

    def compute():
        calls.append(1)
        return {"x": torch.arange(3)}

    first = cache.cached("demo", compute, model="m", n=3)
    second = cache.cached("demo", compute, model="m", n=3)
    assert calls == [1] and torch.equal(first["x"], second["x"])
    cache.cached("demo", compute, model="m", n=4)
    assert calls == [1, 1]
    files = sorted(p.name for p in (tmp_path / "demo").iterdir())
    assert len(files) == 2 and all(f.endswith(".pt") for f in files)


def test_cache_recomputes_a_corrupted_file(tmp_path, monkeypatch):
    monkeypatch.setattr(cache, "CACHE_DIR", tmp_path)
    path = cache.cache_path("demo", model="m")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"garbage")
    assert cache.cached("demo", lambda: {"ok": torch.ones(1)}, model="m")["ok"].item() == 1.0
