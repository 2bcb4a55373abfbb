"""Table 1 the paper's way: the L-BFGS recipe, the decay readings, and the committed whole-training-set runs."""
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import scipy.optimize
import torch
from torch import nn

from lib import ROOT, attack, data, fast_attack, models, paper, table1, zoo
from lib.train import classification_loss, fit_lbfgs


def test_fit_lbfgs_reaches_scipys_minimum():
    """Full-batch L-BFGS on a small L2-regularised logistic regression ends at scipy's L-BFGS-B minimum."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 5, generator=g, dtype=torch.float64)
    y = (x[:, 0] + 0.5 * torch.randn(300, generator=g, dtype=torch.float64) > 0).long()
    torch.manual_seed(0)
    model = nn.Linear(5, 2)
    lam = 0.1
    loss = classification_loss(lambda m: lam * m.weight.pow(2).sum())
    log = fit_lbfgs(model, x.float(), y, loss, max_iter=500, progress=False)
    assert log[-1]["converged"]

    xn, yn = x.numpy(), y.numpy()

    def objective(theta: np.ndarray) -> float:
        w, b = theta[:10].reshape(2, 5), theta[10:]
        z = xn @ w.T + b
        z -= z.max(1, keepdims=True)
        ce = -(z[np.arange(len(yn)), yn] - np.log(np.exp(z).sum(1))).mean()
        return ce + lam * (w ** 2).sum()

    best = scipy.optimize.minimize(objective, np.zeros(12), method="L-BFGS-B", options={"gtol": 1e-10, "ftol": 1e-15})
    ours = np.concatenate([model.weight.detach().double().numpy().ravel(), model.bias.detach().double().numpy()])
    # the logits' shift invariance is fixed by the decay on w; the bias is free up to a common shift
    assert objective(ours) == pytest.approx(best.fun, abs=1e-6)
    assert np.allclose(ours[:10], best.x[:10], atol=1e-3)
    assert model.weight.dtype == torch.float32 and not model.training


def test_fit_lbfgs_stops_at_the_cap_and_says_so():
    torch.manual_seed(0)
    model = models.softmax_classifier()
    x, y = data.fixed_subset(500, train=True, seed=1)
    log = fit_lbfgs(model, x, y, classification_loss(), max_iter=3, log_every=2, progress=False)
    assert [entry["iteration"] for entry in log] == [2, 3]
    assert not log[-1]["converged"]


def test_fit_lbfgs_bad_input():
    model = models.softmax_classifier()
    x, y = data.fixed_subset(10, train=True, seed=1)
    with pytest.raises(ValueError, match="differ in length"):
        fit_lbfgs(model, x, y[:5], classification_loss(), progress=False)
    with pytest.raises(ValueError, match="must be positive"):
        fit_lbfgs(model, x, y, classification_loss(), max_iter=0, progress=False)


@pytest.mark.parametrize("reading,expected", [("outputs", [10, 100]), ("inputs", [784, 10]), ("none", [1, 1]),
                                              ("half", [2, 2])])
def test_decay_divisor_per_reading(reading, expected):
    net = nn.Sequential(nn.Flatten(), nn.Linear(784, 10), nn.Linear(10, 100))
    assert [models.decay_divisor(layer, reading) for layer in models.weight_layers(net)] == expected
    penalty = models.weight_decay_penalty(net, (1.0, 1.0), reading)
    explicit = sum(layer.weight.pow(2).sum() / k for layer, k in zip(models.weight_layers(net), expected))
    assert penalty.item() == pytest.approx(explicit.item(), rel=1e-6)
    with pytest.raises(ValueError, match="unknown weight-decay reading"):
        models.weight_decay_penalty(net, (1.0, 1.0), "quarter")


def test_committed_decay_readings_choose_the_zoos_reading():
    """The zoo's paper-recipe reading is the one the committed fits say is closest to Table 1's training errors."""
    frame = table1.load_decay_readings()
    assert set(frame["reading"]) == set(table1.READINGS) and len(frame) == 3 * len(table1.READINGS)
    assert table1.choose_reading(frame) == zoo.PAPER_DECAY
    assert frame[frame["reading"] == zoo.PAPER_DECAY]["converged"].all()
    assert all(zoo.spec(name).decay == zoo.PAPER_DECAY for name in paper.TABLE1_MODELS)


def test_one_committed_reading_refits_to_its_recorded_errors():
    """Refitting softmax-1 under the chosen reading reproduces the committed training and test errors."""
    frame = table1.load_decay_readings().set_index(["reading", "model"])
    model, last = table1.fit_reading(zoo.PAPER_DECAY, 1.0)
    train_x, train_y = data.load_mnist(train=True)
    test_x, test_y = data.load_mnist(train=False)
    row = frame.loc[(zoo.PAPER_DECAY, "softmax-1")]
    from lib.train import error_rate

    assert error_rate(model, train_x, train_y) == pytest.approx(row["train_error"], abs=0.02)
    assert error_rate(model, test_x, test_y) == pytest.approx(row["test_error"], abs=0.02)


def test_paper_recipe_models_are_lbfgs_and_modern_ones_adam():
    for name in (*paper.TABLE1_MODELS, *paper.TABLE3_MODELS):
        assert zoo.spec(name).recipe == "paper" and zoo.spec(f"{name}-modern").recipe == "modern"
        log = zoo.record(name)["history"]
        log = log["classifier"] if isinstance(log, dict) else log
        assert "iteration" in log[-1] and "max_grad" in log[-1]


def _synthetic_run(rule: str) -> table1.DistortionRun:
    d = torch.tensor([[0.1, 0.3, 0.2], [0.0, 0.0, 0.0], [0.4, 0.2, 0.6]], dtype=torch.float16)
    ok = torch.tensor([[True, True, False], [False, True, False], [True, True, True]])
    return table1.DistortionRun("softmax-1e-4", rule, torch.arange(3, dtype=torch.int32), d,
                                torch.zeros(3, 3, dtype=torch.uint8), ok, torch.tensor([False, True, False]),
                                torch.zeros(3, 0, dtype=torch.uint8), {"images": 3})


def test_statistics_over_nine_targets():
    run = _synthetic_run("every")
    best, ok = table1.run_distortions(run, "best")
    assert torch.allclose(best[[0, 2]], torch.tensor([0.1, 0.2]), atol=1e-3) and ok.tolist() == [True, True, True]
    mean, ok = table1.run_distortions(run, "mean of nine")
    assert mean[2].item() == pytest.approx(0.4, abs=1e-3) and ok.tolist() == [False, False, True]
    with pytest.raises(ValueError, match="unknown statistic"):
        table1.run_distortions(run, "median")


def _nine_label_run(rule: str, distortion: torch.Tensor, indices: torch.Tensor) -> table1.DistortionRun:
    n = len(indices)
    return table1.DistortionRun("softmax-1e-4", rule, indices.to(torch.int32), distortion.to(torch.float16),
                                torch.zeros(n, 9, dtype=torch.uint8), torch.ones(n, 9, dtype=torch.bool),
                                torch.zeros(n, dtype=torch.bool), torch.zeros(n, 0, dtype=torch.uint8), {})


def test_fast_check_compares_the_two_attacks_on_the_subsets_images(monkeypatch):
    """The fast run (all images) is read at the subset's indices; its summaries are 1.02x the paper run's."""
    g = torch.Generator().manual_seed(0)
    subset = torch.tensor([5, 1, 8])
    paper_d = 0.05 + 0.1 * torch.rand(3, 9, generator=g)
    whole = torch.rand(10, 9, generator=g)
    whole[subset] = 1.02 * paper_d
    runs = {"every": _nine_label_run("every", paper_d, subset), "every-fast": _nine_label_run("every-fast", whole,
                                                                                                torch.arange(10))}
    monkeypatch.setattr(table1, "load_run", lambda name, rule, images: runs[rule])
    check = table1.fast_check(("softmax-1e-4",))
    assert list(check["statistic"]) == list(table1.NINE_LABEL_STATISTICS)
    for k in table1.AGGREGATES:
        assert check[f"ratio {k}"].to_numpy() == pytest.approx(1.02, abs=2e-3)  # float16 storage
    assert check["per label: median fast / paper"].iloc[0] == pytest.approx(1.02, abs=2e-3)
    runs["every-fast"] = _nine_label_run("every-fast", whole, torch.arange(10).flip(0))
    with pytest.raises(ValueError, match="subset's images"):
        table1.fast_check(("softmax-1e-4",))


def test_nine_label_sources_move_a_statistic_to_the_whole_set_only_where_the_check_passes():
    def check(best: float, mean: float) -> pd.DataFrame:
        return pd.DataFrame([{"model": "m", "statistic": s, **{f"ratio {k}": v for k in table1.AGGREGATES}}
                             for s, v in (("best", best), ("mean of nine", mean))])
    subset = ("every", table1.EVERY_IMAGES)
    assert table1.nine_label_sources(check(1.004, 1.05)) == {"best": ("every-fast", "all"), "mean of nine": subset}
    assert table1.nine_label_sources(check(0.994, 0.996)) == {"best": subset, "mean of nine": ("every-fast", "all")}
    assert table1.nine_label_sources(check(1.0, 1.0).iloc[:0]) == {"best": subset, "mean of nine": subset}


def test_nine_label_sources_prefer_the_papers_attack_on_the_whole_set(tmp_path, monkeypatch):
    monkeypatch.setattr(table1, "RESULTS_DIR", tmp_path)
    (tmp_path / "table1").mkdir()
    for name in paper.TABLE1_MODELS[:-1]:
        (tmp_path / "table1" / f"{name}.every.all.pt").write_bytes(b"")
    check = pd.DataFrame([{"model": "m", "statistic": s, **{f"ratio {k}": 1.0 for k in table1.AGGREGATES}}
                          for s in table1.NINE_LABEL_STATISTICS])
    assert set(table1.nine_label_sources(check).values()) == {("every-fast", "all")}  # one model still missing
    (tmp_path / "table1" / f"{paper.TABLE1_MODELS[-1]}.every.all.pt").write_bytes(b"")
    assert set(table1.nine_label_sources(check).values()) == {("every", "all")}


def test_nine_label_fast_settings_are_the_committed_choice(monkeypatch):
    choice = table1.nine_label_fast_choice()  # raises unless NINE_LABEL_FAST is the benchmark's choice
    assert list(choice.index) == [*paper.TABLE1_MODELS, "worst"]
    assert choice.loc["worst", "NINE_LABEL_FAST"] == choice["NINE_LABEL_FAST"].iloc[:-1].max()
    monkeypatch.setattr(table1, "NINE_LABEL_FAST", {**table1.NINE_LABEL_FAST, "c_factor": 3.0})
    with pytest.raises(ValueError, match="not the benchmark's choice"):
        table1.nine_label_fast_choice()


def test_cli_rejects_unknown_rule_and_model():
    for args in (["--rules", "closest"], ["--models", "FC999"]):
        out = subprocess.run([sys.executable, "-m", "lib", "table1", "--images", "10", *args], cwd=ROOT,
                             capture_output=True, text=True)
        assert out.returncode == 2 and "unknown" in out.stderr


COMMITTED = sorted(table1.RESULTS_DIR.glob("table1/*.pt"))


@pytest.mark.parametrize("path", COMMITTED, ids=[p.name for p in COMMITTED])
def test_committed_run_matches_a_fresh_attack(path):
    """Re-attack a seeded sample of 50 images of a committed run and check distortion, target and success."""
    name, rule, images = path.name[:-3].split(".")
    run = table1.load_run(name, rule, images if images == "all" else int(images))
    assert run.meta["weights"] == zoo.fingerprint(name), "the committed run was made with other weights"
    assert run.meta["attack_version"] == attack.VERSION, "the committed run was made with another attack version"
    if rule == "every-fast":
        assert run.meta["fast_attack_version"] == fast_attack.VERSION, "made with another fast attack version"
        assert run.meta["fast_attack_settings"] == table1.NINE_LABEL_FAST, "made with other fast attack settings"
    model = zoo.load(name)
    images_all, labels_all = data.load_mnist(train=True)
    x, y = images_all[run.indices.long()], labels_all[run.indices.long()]
    assert torch.equal(run.misclassified, attack.predict(model, x) != y)
    pick = torch.randperm(len(x), generator=torch.Generator().manual_seed(1))[:200]
    pick = pick[~run.misclassified[pick]][:50]
    targets = run.target[pick].long()
    if rule in table1.NINE_LABEL_RULES:  # one of the nine per image, chosen by the seed
        column = torch.randint(9, (len(pick),), generator=torch.Generator().manual_seed(2))
        targets, committed = targets[torch.arange(len(pick)), column], run.distortion[pick, column].float()
        success = run.success[pick, column]
    else:
        committed, success = run.distortion[pick].float(), run.success[pick]
    if rule == "every-fast":
        fresh = fast_attack.fast_attack(model, x[pick], targets, **table1.NINE_LABEL_FAST)
    else:
        fresh = attack.lbfgs_attack(model, x[pick], targets)
    assert torch.equal(fresh.success, success)
    assert torch.allclose(fresh.distortion[success], committed[success], rtol=0.02, atol=2e-4)
    if rule not in table1.NINE_LABEL_RULES:
        own = paper.TABLE1_MODELS.index(name)
        assert torch.equal(run.predictions[pick, own].long()[success], targets[success])


def test_choose_target_reading_picks_the_closest_pair():
    import pandas as pd

    rows = []
    for model in ("a", "b"):
        rows.append({"model": model, "statistic": "random", "ratio mean": 0.8, "ratio mean (correct only)": 0.9,
                     "ratio pooled stddev": 1.05})
        rows.append({"model": model, "statistic": "best", "ratio mean": 0.4, "ratio mean (correct only)": 0.5,
                     "ratio pooled stddev": 0.6})
    frame = pd.DataFrame(rows)
    fit = table1.reading_fit(frame)
    assert fit.loc["random", "pooled stddev"] == pytest.approx(abs(np.log(1.05)), abs=1e-3)
    assert table1.choose_target_reading(frame) == ("random", "pooled stddev")


def test_distortion_table_aggregates_a_committed_run():
    """The three aggregates recomputed by hand from one committed run."""
    run = table1.load_run("N100-100-10", "random")
    frame = table1.distortion_table("all", statistics=("random",)).set_index("model")
    d, ok = run.distortion.double(), run.success & ~run.misclassified
    row = frame.loc["N100-100-10"]
    assert row["mean (correct only)"] == pytest.approx(d[ok].mean().item(), abs=1e-4)
    assert row["pooled stddev"] == pytest.approx(d[ok].pow(2).mean().sqrt().item(), abs=1e-4)
    assert row["misclassified"] == int(run.misclassified.sum())


def _distortion_rows(ratios: list[float], success: float = 100.0) -> pd.DataFrame:
    rows = []
    for name, ratio in zip(paper.TABLE1_MODELS, ratios):
        ref = paper.TABLE1[name]["distortion"]
        rows.append({"model": name, "statistic": "random", "success % (of correct)": success,
                     "pooled stddev": ratio * ref, "paper": ref, "ratio pooled stddev": ratio})
    return pd.DataFrame(rows)


def test_distortion_findings_follow_the_numbers():
    found = table1.distortion_findings(_distortion_rows([1.0, 1.1, 0.9, 1.0, 1.0, 1.0]), "random", "pooled stddev")
    assert [f.holds for f in found] == [True] * 8
    found = table1.distortion_findings(_distortion_rows([1.0, 1.2, 0.5, 1.0, 1.0, 1.0], success=99.9),
                                       "random", "pooled stddev")
    assert [f.holds for f in found] == [False, True, False, False, True, True, True, False]  # 0.12 > 0.07: not monotone
    noise = pd.DataFrame({"noise": ["clipped to [0,1]", "not clipped"], "stddev": [1.0, 1.0],
                          "a accuracy %": [55.0, 20.0], "b accuracy %": [47.0, 30.0], "paper accuracy %": [51.0, 51.0]})
    assert table1.closest_noise_reading(noise) == "clipped to [0,1]"
    assert table1.distortion_findings(_distortion_rows([1] * 6), "random", "pooled stddev", noise=noise)[-1].holds
    noise.loc[0, "b accuracy %"] = 35.0
    assert not table1.distortion_findings(_distortion_rows([1] * 6), "random", "pooled stddev", noise=noise)[-1].holds
    with pytest.raises(ValueError, match="unknown aggregate"):
        table1.distortion_findings(_distortion_rows([1] * 6), "random", "median")
    with pytest.raises(ValueError, match="no rows"):
        table1.distortion_findings(_distortion_rows([1] * 6), "best", "pooled stddev")


def test_model_findings_use_the_paper_recipe_rows():
    rows = pd.DataFrame([{"model": "softmax-1", "recipe": "paper (L-BFGS)", "train error %": 23.08,
                          "paper train error %": 21.2, "train gap (pp)": 1.88, "test error %": 21.64,
                          "paper test error %": 20.0, "test gap (pp)": 1.64},
                         {"model": "N100-100-10", "recipe": "paper (L-BFGS)", "train error %": 0.0,
                          "paper train error %": 0.0, "train gap (pp)": 0.0, "test error %": 1.99,
                          "paper test error %": 1.64, "test gap (pp)": 0.35},
                         {"model": "N100-100-10", "recipe": "modern (Adam)", "train error %": 0.0,
                          "paper train error %": 0.0, "train gap (pp)": 0.0, "test error %": 1.5,
                          "paper test error %": 1.64, "test gap (pp)": -0.14}])
    found = table1.model_findings(rows)
    assert [(f.claim.split(":")[0], f.holds) for f in found] == [("FC10(1)", False), ("FC100-100-10", True)]
    assert found[0].paper == "21.2 / 20" and found[0].ours == "23.08 / 21.64"
    with pytest.raises(ValueError, match="paper-recipe"):
        table1.model_findings(rows[rows["recipe"].str.startswith("modern")])
