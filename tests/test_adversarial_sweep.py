import json
from dataclasses import replace

import pytest
import torch

from lib import adversarial_sweep as sweep
from lib.adversarial_training import LAYERS, PoolSettings
from lib.adversarial_sweep import METHODS, Run, RunRecord


def test_runs_check_their_settings():
    for bad, match in [(dict(method="bagging"), "unknown method"), (dict(method="dropout"), "dropout"),
                       (dict(method="weight decay", dropout=0.2), "dropout"),
                       (dict(method="dropout", dropout=0.2, recipe="paper"), "recipe"),
                       (dict(method="adversarial pool"), "pool settings"),
                       (dict(method="weight decay", pool=PoolSettings()), "pool settings"),
                       (dict(method="FGSM"), "epsilon"), (dict(method="weight decay", epsilon=0.1), "epsilon")]:
        with pytest.raises(ValueError, match=match):
            Run(**bad)


def test_sweep_covers_every_factor_once():
    runs = sweep.sweep_runs()
    assert len({r.key for r in runs}) == len(runs)
    assert all(not r.final and r.seed == 0 for r in runs)
    pools = [r.pool for r in runs if r.method == "adversarial pool"]
    centre = PoolSettings()
    assert {p.layers for p in pools} == {(layer,) for layer in LAYERS} | {LAYERS}
    for factor in ("weight", "refresh_every", "magnify", "target"):
        levels = {getattr(p, factor) for p in pools}
        assert len(levels) >= 2, factor
        for p in pools:  # one factor at a time: every other factor at the centre's level
            differs = [f for f in ("layers", "weight", "refresh_every", "magnify", "target")
                       if getattr(p, f) != getattr(centre, f)]
            assert len(differs) <= 1, p
    assert {r.recipe for r in runs if r.method == "weight decay"} == set(sweep.RECIPES)


def test_the_second_stage_varies_each_factor_around_the_first_stages_best():
    first = sweep.sweep_runs()
    errors = {"h2": 1.0}
    records = [record(run, validation=errors.get("+".join(run.pool.layers), 2.0) if run.pool and
                      run.pool == replace(PoolSettings(), layers=run.pool.layers) else 2.0) for run in first]
    runs = sweep.sweep_runs(records)
    assert runs[: len(first)] == first and len({r.key for r in runs}) == len(runs)
    second = runs[len(first):]
    best = replace(PoolSettings(), layers=("h2",))
    assert all(r.pool.layers == ("h2",) for r in second)
    assert {r.pool.weight for r in second} | {best.weight} == set(sweep.LEVELS["weight"])
    assert len(second) == sum(len(sweep.LEVELS[f]) - 1 for f in sweep.FACTORS[1:]) + 1
    lbfgs = [r for r in second if r.recipe == "paper"]  # the best first-stage pool under the paper's optimiser
    assert len(lbfgs) == 1 and lbfgs[0].pool == replace(best, **sweep.LBFGS_POOL)
    assert "iterations (L-BFGS)" in lbfgs[0].setting()
    with pytest.raises(ValueError, match="second stage"):
        sweep.sweep_runs(records[:-1])


def record(run, validation=None, test=None, distortion=0.03):
    return RunRecord(run, [], 1.0, validation_error=validation, test_error=test, distortion=distortion)


def sweep_records(errors: dict[str, list[float]]):
    """Sweep records with the given validation errors, method by method, in sweep order."""
    by_method = {m: [r for r in sweep.sweep_runs() if r.method == m] for m in METHODS}
    return [record(run, validation=e) for m, es in errors.items() for run, e in zip(by_method[m], es)]


def test_choose_takes_the_lowest_validation_error_per_method():
    records = sweep_records({"weight decay": [2.0, 1.8], "dropout": [1.9, 1.7, 1.75, 2.5],
                             "FGSM": [1.6, 1.5, 1.9, 2.2], "adversarial pool": [2.1, 1.9, 1.95, 1.85]})
    chosen = sweep.choose(records)
    assert chosen["weight decay"].recipe == "paper" and chosen["dropout"].dropout == 0.2
    assert chosen["FGSM"].epsilon == 0.1 and chosen["adversarial pool"].pool.layers == ("h2",)
    finals = [record(replace(chosen["dropout"], final=True), test=0.1)]  # finals never take part
    assert sweep.choose(records + finals)["dropout"].dropout == 0.2
    with pytest.raises(ValueError, match="FGSM"):
        sweep.choose([r for r in records if r.run.method != "FGSM"])


def test_the_layer_comparison_varies_the_best_modern_pool_even_when_l_bfgs_wins():
    records = sweep_records({"weight decay": [2.0], "dropout": [1.9], "FGSM": [1.6], "adversarial pool": [1.8, 1.7]})
    lbfgs = Run("adversarial pool", recipe="paper", pool=replace(PoolSettings(), **sweep.LBFGS_POOL))
    records.append(record(lbfgs, validation=1.0))
    assert sweep.choose(records)["adversarial pool"] == lbfgs
    base = sweep.layer_base(records)
    assert base.recipe == "modern" and base.pool.layers == ("input",)  # 1.7, the second pool run
    finals = sweep.final_runs(records)
    assert {r.recipe for r in finals if r.method == "adversarial pool"} == {"modern", "paper"}
    assert len({(r.method, r.setting()) for r in finals}) == 4 + 4 + 1  # + four modern layer sets, the other recipe


def test_finals_are_the_chosen_runs_and_the_layer_variants_with_three_seeds():
    finals = sweep.final_runs(sweep_records({"weight decay": [2.0, 1.8], "dropout": [1.9], "FGSM": [1.6],
                                             "adversarial pool": [1.8]}))
    assert all(r.final for r in finals) and len({r.key for r in finals}) == len(finals)
    settings = {(r.method, r.setting()) for r in finals}
    assert len(settings) == 4 + 3 + 1  # the chosen pool is input+h1+h2: plus input, h1, h2 alone; the other recipe
    assert {r.recipe for r in finals if r.method == "weight decay"} == set(sweep.RECIPES)
    assert all(sorted(r.seed for r in finals if (r.method, r.setting()) == s) == list(sweep.SEEDS) for s in settings)


def final_records(means: dict[str, float], layers: dict[str, float], sd: float = 0.02, decay_sweep=(2.0,)):
    records = sweep_records({"weight decay": list(decay_sweep), "dropout": [1.9], "FGSM": [1.6],
                             "adversarial pool": [1.8]})
    chosen = sweep.choose(records)
    out = []
    for run in sweep.final_runs(records):
        if run.method == "adversarial pool":
            value = layers["+".join(run.pool.layers)]
        elif run.method == "weight decay" and run.recipe != chosen["weight decay"].recipe:
            value = means.get("weight decay, other recipe", means["weight decay"])
        else:
            value = means[run.method]
        out.append(record(run, test=value + sd * (run.seed - 1)))
    return chosen, out


def test_findings_follow_the_records():
    sweeps = sweep_records({"weight decay": [2.0], "dropout": [1.9], "FGSM": [1.6], "adversarial pool": [1.8]})
    _, finals = final_records({"weight decay": 1.6, "dropout": 1.3, "FGSM": 1.4},
                              {"input": 1.5, "h1": 1.3, "h2": 1.2, "input+h1+h2": 1.1})
    found = sweep.findings(sweeps + finals)
    assert [f.holds for f in found] == [True] * 6
    _, finals = final_records({"weight decay": 1.9, "dropout": 1.95, "FGSM": 1.5},
                              {"input": 2.1, "h1": 2.2, "h2": 2.0, "input+h1+h2": 2.3})
    found = sweep.findings(sweeps + finals)
    assert [f.holds for f in found] == [False] * 6
    _, finals = final_records({"weight decay": 1.62, "dropout": 1.61, "FGSM": 1.7},
                              {"input": 2.1, "h1": 2.2, "h2": 2.0, "input+h1+h2": 1.6})
    first = sweep.findings(sweeps + finals)[0]
    assert first.holds and "less than the seeds' spread" in first.note  # 1.60 < 1.61 < 1.62, sd 0.02
    # the paper recipe's weight decay is chosen (validation 1.8 < 2.0) and beats the pool; Adam's does not
    sweeps = sweep_records({"weight decay": [2.0, 1.8], "dropout": [1.9], "FGSM": [1.6], "adversarial pool": [1.8]})
    _, finals = final_records({"weight decay": 1.5, "weight decay, other recipe": 2.2, "dropout": 1.9, "FGSM": 1.7},
                              {"input": 2.1, "h1": 2.2, "h2": 2.0, "input+h1+h2": 1.9}, decay_sweep=(2.0, 1.8))
    found = {f.claim: f.holds for f in sweep.findings(sweeps + finals)}
    assert not found["the pool beats weight decay alone"]
    assert found["the pool beats weight decay trained the same way (Adam, mini-batches)"]


def test_sweep_findings_read_the_validation_split():
    pool = [2.5, 3.0, 2.8, 2.2, 2.3, 2.4, 2.7, 2.9, 2.6, 2.6, 2.6, 2.6, 2.6, 2.6]  # centre, layers, weights, ...
    records = sweep_records({"weight decay": [2.2, 1.7], "dropout": [2.5], "FGSM": [1.6], "adversarial pool": pool})
    found = {f.claim: f for f in sweep.sweep_findings(records)}
    assert [f.holds for f in found.values()] == [True, True, True, False, True, False]
    assert "stage 1: 0.1: 2.30, 0.25: 2.40, 0.5: 2.50, 1: 2.70, 2: 2.90" in found[
        "a lighter pool is better: validation error rises with the pool's weight (both stages)"].ours
    pool[4:8] = [2.9, 2.7, 2.4, 2.3]  # heavier pools better; FGSM only a little below weight decay
    records = sweep_records({"weight decay": [2.2, 1.7], "dropout": [2.5], "FGSM": [2.1], "adversarial pool": pool})
    found = {f.claim: f for f in sweep.sweep_findings(records)}
    assert not found["a lighter pool is better: validation error rises with the pool's weight (both stages)"].holds
    fgsm = found["FGSM beats weight decay trained the same way (Adam)"]
    assert not fgsm.holds and "less than" in fgsm.note
    lbfgs = Run("adversarial pool", recipe="paper", pool=replace(PoolSettings(), layers=("h2",), **sweep.LBFGS_POOL))
    found = sweep.sweep_findings(records + [record(lbfgs, validation=1.2)])
    assert found[-1].claim == "the pool beats weight decay under the paper's optimiser" and found[-1].holds


def test_records_round_trip_and_missing_ones_name_the_command(tmp_path, monkeypatch):
    monkeypatch.setattr(sweep, "FOLDER", tmp_path)
    run = Run("adversarial pool", pool=PoolSettings(layers=("h1", "h2"), magnify=1.5), seed=2, final=True)
    rec = RunRecord(run, [{"epoch": 1, "loss": 0.5}], 12.5, test_error=1.5, distortion=0.04, fresh_examples=10,
                    pool_success=1.0)
    sweep.save(rec)
    assert sweep.load([run]) == [rec]
    assert json.loads((tmp_path / f"{run.key}.json").read_text())["version"] == sweep.VERSION
    with pytest.raises(FileNotFoundError, match="python -m lib adversarial-training"):
        sweep.load([replace(run, seed=1)])


@pytest.fixture
def small_split(monkeypatch):
    """5,000 training and 1,000 validation images instead of 50,000 and 10,000."""
    full = sweep.split_data

    def split(final):
        x, y, vx, vy = full(final)
        return x[:5000], y[:5000], vx[:1000], vy[:1000]
    monkeypatch.setattr(sweep, "split_data", split)


def test_a_short_run_records_what_it_measured(monkeypatch, small_split):
    monkeypatch.setattr(sweep, "EPOCHS", 2)
    run = Run("adversarial pool", pool=PoolSettings(layers=("input", "h2"), size=500, refresh_every=20, fraction=0.1))
    rec, model, snapshots = sweep.train_run(run, progress=False)
    assert rec.test_error is None and 0 < rec.validation_error < 60  # 157 Adam steps: far better than chance
    assert rec.fresh_examples > 200 and rec.pool_success > 0.9 and len(snapshots) == 2  # 7 refreshes of 2 x 50
    assert [h["epoch"] for h in rec.history] == [1, 2] and rec.history[-1]["validation_error"] == rec.validation_error
    assert not any(p.requires_grad for p in model.parameters())


def test_the_paper_recipe_refreshes_the_pool_between_l_bfgs_runs(monkeypatch, small_split):
    monkeypatch.setattr(sweep, "LBFGS_ITERATIONS", 40)
    run = Run("adversarial pool", recipe="paper", pool=PoolSettings(layers=("h2",), size=500, refresh_every=10,
                                                                    fraction=0.2))
    rec, model, _ = sweep.train_run(run, progress=False)
    assert [h["iteration"] for h in rec.history] == [10, 20, 30, 40]
    assert rec.fresh_examples > 300  # 4 refreshes of 100, less the images already misclassified
    assert next(model.parameters()).dtype == torch.float32 and rec.validation_error < 60


def test_committed_records_are_complete_and_consistent():
    records = sweep.sweep_records()
    for rec in records:
        assert len(rec.history) >= 1 and rec.test_error is None
        assert rec.history[-1]["validation_error"] == rec.validation_error
        assert 0.5 < rec.validation_error < 5
    finals = sweep.load(sweep.final_runs(records))
    for rec in finals:
        assert rec.validation_error is None and 0.5 < rec.test_error < 5 and rec.distortion > 0
    chosen = sweep.choose(records)
    model = sweep.load_model(replace(chosen["dropout"], seed=0, final=True))
    from lib.data import load_mnist
    from lib.train import error_rate
    test_x, test_y = load_mnist(train=False)
    saved = next(r for r in finals if r.run == replace(chosen["dropout"], seed=0, final=True))
    assert error_rate(model, test_x, test_y) == pytest.approx(saved.test_error, abs=1e-3)
    fit = sweep.fit_table(records + finals).set_index("method")
    assert list(fit.index) == list(METHODS) and fit["training error %"].between(0, 5).all()
    assert fit.loc["dropout", "test error %"] == saved.test_error
    assert isinstance(model, torch.nn.Sequential)


def test_decay_recipes_table_shows_weight_decay_under_both_recipes():
    sweeps = sweep_records({"weight decay": [2.0, 1.8], "dropout": [1.9], "FGSM": [1.6], "adversarial pool": [1.8]})
    _, finals = final_records({"weight decay": 1.5, "weight decay, other recipe": 2.2, "dropout": 1.9, "FGSM": 1.7},
                              {"input": 2.1, "h1": 2.2, "h2": 2.0, "input+h1+h2": 1.9}, decay_sweep=(2.0, 1.8))
    table = sweep.decay_recipes_table(sweeps + finals).set_index("weight decay, recipe")
    assert list(table.index) == list(sweep.RECIPES) and (table["seeds"] == len(sweep.SEEDS)).all()
    chosen = sweep.choose(sweeps)["weight decay"].recipe  # the validation split chose the paper recipe here
    other = next(r for r in sweep.RECIPES if r != chosen)
    assert table.loc[chosen, "test error % (mean)"] == pytest.approx(1.5)
    assert table.loc[other, "test error % (mean)"] == pytest.approx(2.2)
    assert table.loc[other, "sd"] == pytest.approx(0.02)
