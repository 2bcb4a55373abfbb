import base64
import json
from html.parser import HTMLParser

import matplotlib
import pytest
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from lib import cache, widgets


def test_slider_draws_every_frame_in_row_major_order():
    calls = []

    def draw(c, k):
        calls.append((c, k))
        fig = plt.figure(figsize=(1, 1))
        fig.text(0.5, 0.5, f"{c}{k}")
        return fig

    result = widgets.frames(draw, defaults={"c": 1.0}, alt="text", c=[0.1, 1.0, 10.0], k=[1, 2])
    assert calls == [(0.1, 1), (0.1, 2), (1.0, 1), (1.0, 2), (10.0, 1), (10.0, 2)]
    assert result.default == {"c": 1.0, "k": 2}  # the given default, and the middle value where none is given
    assert result.index({"c": 10.0, "k": 1}) == 4
    assert len(set(result.frames)) == 6 and all(f.startswith(b"\x89PNG") for f in result.frames)


class _Frames(HTMLParser):
    """The sliders and images of a slider's HTML, read by the standard library's parser."""

    def __init__(self):
        super().__init__()
        self.inputs, self.images = [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "input":
            self.inputs.append(attrs)
        if tag == "img":
            self.images.append(attrs)


def test_slider_html_shows_the_default_frame_and_names_every_value():
    result = widgets.frames(lambda c, k: plt.figure(figsize=(1, 1)), defaults={"c": 1.0, "k": "b"},
                            alt="An empty figure", c=[0.1, 1.0], k=["a", "b", "c"])
    parsed = _Frames()
    parsed.feed(result._repr_html_())
    assert [(i["data-name"], i["max"], i["value"]) for i in parsed.inputs] == [("c", "1", "1"), ("k", "2", "1")]
    assert json.loads(parsed.inputs[0]["data-values"]) == ["0.1", "1"]
    assert [img["alt"] for img in parsed.images] == [f"An empty figure; c = {c}, k = {k}"
                                                     for c in ("0.1", "1") for k in "abc"]
    shown = [img["alt"] for img in parsed.images if "display:none" not in img["style"]]
    assert shown == ["An empty figure; c = 1, k = b"]
    png = base64.b64decode(parsed.images[0]["src"].removeprefix("data:image/png;base64,"))
    assert png == result.frames[0]


def test_slider_rejects_bad_input():
    with pytest.raises(ValueError, match="not among its values"):
        widgets.frames(lambda c: plt.figure(), defaults={"c": 5}, alt="a figure", c=[1, 2])
    with pytest.raises(ValueError, match="at least one keyword"):
        widgets.frames(lambda: plt.figure(), alt="a figure")
    with pytest.raises(ValueError, match="no slider"):
        widgets.frames(lambda c: plt.figure(), defaults={"d": 1}, alt="a figure", c=[1, 2])
    with pytest.raises(ValueError, match="repeat"):
        widgets.frames(lambda c: plt.figure(), alt="a figure", c=[0.1, 0.1])
    with pytest.raises(ValueError, match="'k' has one value"):
        widgets.frames(lambda c, k: plt.figure(), alt="a figure", c=[1, 2], k=[10])
    with pytest.raises(ValueError, match="65 frames, more than 64"):
        widgets.frames(lambda c, k: plt.figure(), alt="a figure", c=range(13), k=range(5))


def test_slider_needs_a_description_of_its_figure():
    drawn = []

    def draw(c):
        drawn.append(c)
        return plt.figure(figsize=(1, 1))

    for empty in ("", "   ", None):
        with pytest.raises(ValueError, match="alt must describe the slider's figure"):
            widgets.frames(draw, alt=empty, c=[1, 2])
    assert drawn == []  # refused before any frame is drawn
    with pytest.raises(TypeError, match="alt"):
        widgets.frames(draw, c=[1, 2])  # no default: every slider says what its figure shows
    with pytest.raises(TypeError, match="alt"):
        widgets.slider(draw, c=[1, 2])
    with pytest.raises(ValueError, match="alt must describe"):
        widgets.Slider({"c": [1, 2]}, {"c": 1}, [b"", b""], " ")


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
