import dataclasses
import json
import subprocess
import sys

import pytest
import torch

from lib import ROOT, data, paper, zoo


def test_unknown_name_lists_valid_names():
    with pytest.raises(KeyError, match="unknown model 'FC999'.*softmax-1e-4.*Conv"):
        zoo.load("FC999")


def test_cli_unknown_name_fails_with_list():
    out = subprocess.run([sys.executable, "-m", "lib", "train", "nope"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 2
    assert "unknown model 'nope'" in out.stderr and "N100-100-10" in out.stderr


def test_paper_models_are_zoo_models():
    assert set(paper.TABLE1) <= set(zoo.NAMES) and set(paper.TABLE3) <= set(zoo.NAMES)


@pytest.mark.parametrize("name", zoo.NAMES)
def test_committed_model_matches_its_record(name):
    """Each committed model loads, maps [N,1,28,28] to [N,10], and reproduces its recorded test error."""
    assert (zoo.MODEL_DIR / f"{name}.pt").exists(), f"weights for {name} are not committed"
    model = zoo.load(name)
    assert not model.training
    images, labels = data.load_mnist(train=False)
    logits = model(images[:5])
    assert logits.shape == (5, 10)
    record = zoo.record(name)
    errors = zoo.errors(model)
    # one image of 10,000 may flip on a near-tie when thread counts differ
    assert errors["test_error"] == pytest.approx(record["test_error"], abs=0.011)
    assert {"spec", "train_seconds", "versions", "history"} <= set(record)


@pytest.mark.parametrize("name", ["softmax-1", "softmax-1-modern"])
def test_training_is_reproducible(tmp_path, monkeypatch, name):
    """Training the same spec twice with the same seed gives the same weights (both recipes)."""
    monkeypatch.setattr(zoo, "MODEL_DIR", tmp_path)
    monkeypatch.setitem(zoo.SPECS, name, dataclasses.replace(zoo.SPECS[name], max_iter=20, epochs=2))
    a = zoo.train(name, progress=False, save=False)
    b = zoo.train(name, progress=False, save=False)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)


def test_committed_paper_model_is_reproduced():
    """Retraining a committed paper-recipe model from scratch (not saved) gives its recorded errors."""
    fresh = zoo.errors(zoo.train("softmax-1", progress=False, save=False))
    record = zoo.record("softmax-1")
    assert fresh["train_error"] == pytest.approx(record["train_error"], abs=0.011)
    assert fresh["test_error"] == pytest.approx(record["test_error"], abs=0.011)


def test_corrupted_weights_are_reported(tmp_path, monkeypatch):
    monkeypatch.setattr(zoo, "MODEL_DIR", tmp_path)
    (tmp_path / "softmax-1.pt").write_bytes(b"not a torch file")
    with pytest.raises(RuntimeError, match="softmax-1.pt is corrupted"):
        zoo.load("softmax-1")


def test_saved_files_are_complete(tmp_path, monkeypatch):
    monkeypatch.setattr(zoo, "MODEL_DIR", tmp_path)
    monkeypatch.setitem(zoo.SPECS, "softmax-1", dataclasses.replace(zoo.SPECS["softmax-1"], max_iter=3))
    monkeypatch.setitem(zoo.SPECS, "softmax-1-modern", dataclasses.replace(zoo.SPECS["softmax-1-modern"], epochs=1))
    zoo.train("softmax-1", progress=False)
    zoo.train("softmax-1-modern", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["softmax-1-modern.json", "softmax-1-modern.pt",
                                                          "softmax-1.json", "softmax-1.pt"]
    record = json.loads((tmp_path / "softmax-1.json").read_text())
    assert record["spec"]["max_iter"] == 3 and record["history"][-1]["iteration"] == 3 and 0 <= record["test_error"] <= 100
    assert record["spec"]["recipe"] == "paper" and record["history"][-1]["converged"] is False
    record = json.loads((tmp_path / "softmax-1-modern.json").read_text())
    assert record["spec"]["epochs"] == 1 and len(record["history"]) == 1
