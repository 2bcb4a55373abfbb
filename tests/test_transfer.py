"""Section 4.2's transfer experiments (lib/transfer.py), checked against explicit per-image computations."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from lib import attack, data, paper, transfer, zoo

SOURCES = ("softmax-1e-4", "N100-100-10")


@pytest.fixture(scope="module")
def models() -> dict:
    return {name: zoo.load(name) for name in SOURCES}


@pytest.fixture(scope="module")
def examples(models) -> dict:
    """Runner-up adversarial examples of 16 training images, made on each of two zoo models."""
    x, y = data.fixed_subset(16, train=True, seed=3)
    out = {}
    for name, model in models.items():
        result = attack.min_distortion(model, x, y, target="runner-up")
        out[name] = {"x": x, "y": y, "x_adv": result.x_adv, "success": result.success,
                     "distortion": result.distortion}
    return out


def explicit_error(model, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Error % counted one image at a time."""
    wrong = 0
    with torch.no_grad():
        for image, label in zip(images, labels):
            wrong += int(model(image[None]).argmax(1).item() != label.item())
    return 100.0 * wrong / len(labels)


def test_transfer_matrix_diagonal_is_100_and_cells_match_a_per_image_count(models, examples):
    matrix = transfer.cross_model_error(examples, models)
    assert list(matrix.index) == list(SOURCES) and list(matrix.columns) == list(SOURCES)
    for name in SOURCES:
        assert examples[name]["success"].all(), name
        assert matrix.loc[name, name] == 100.0  # each model's own successful examples fool it
    for source in SOURCES:
        ex = examples[source]
        ok = ex["success"]
        for target, model in models.items():
            assert matrix.loc[source, target] == pytest.approx(explicit_error(model, ex["x_adv"][ok], ex["y"][ok]))


def test_noise_rows_use_the_stated_stddev(models):
    x, y = data.fixed_subset(64, train=True, seed=1)
    stddev, seed = 0.3, 7
    result = transfer.noise_error(x, y, models, stddev, seed=seed)
    # the same noise drawn independently: a seeded standard normal scaled by the stddev
    noise = (torch.randn(x.shape, generator=torch.Generator().manual_seed(seed)) * stddev).numpy().astype(np.float64)
    assert result.stddev == stddev
    assert result.drawn_stddev == pytest.approx(noise.std(ddof=1), rel=1e-5)
    assert abs(result.drawn_stddev - stddev) < 0.01  # 50,176 draws: the sample stddev is within ~0.3% of 0.3
    noisy = np.clip(x.numpy() + noise, 0, 1)
    assert result.distortion == pytest.approx(np.sqrt(((noisy - x.numpy()) ** 2).reshape(64, -1).mean(1)).mean(),
                                              rel=1e-5)
    for name, model in models.items():
        assert result.errors[name] == pytest.approx(explicit_error(model, torch.from_numpy(noisy).float(), y))


def test_details_say_clipped_or_unclipped_in_words(models, examples):
    x, y = examples[SOURCES[0]]["x"], examples[SOURCES[0]]["y"]
    _, details = transfer._noise_rows(x, y, models, 0.1, "noise stddev 0.1", seed=0, clips=(True, False))
    assert {row: d["clipping"] for row, d in details.items()} == {
        "noise stddev 0.1": transfer.CLIPPED, "noise stddev 0.1, unclipped": transfer.NOT_CLIPPED}
    assert {d["clipping"] for d in transfer._adversarial_details(examples).values()} == {transfer.CLIPPED}
    assert (transfer.CLIPPED, transfer.NOT_CLIPPED) == ("clipped", "unclipped")


def test_halves_are_disjoint_and_the_table3_models_train_on_them():
    p1, p2 = data.split_halves()
    a, b = set(p1.tolist()), set(p2.tolist())
    assert len(a) == len(b) == 30_000 and not a & b and a | b == set(range(60_000))
    for name in paper.TABLE3_MODELS:
        assert zoo.spec(name).train_on == name.rsplit("@", 1)[1]


def test_magnify_gives_the_stated_stddev():
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(5, 1, 28, 28, generator=generator)
    x_adv = (x + 0.05 * torch.randn(x.shape, generator=generator)).clamp(0, 1)
    x_adv[3] = x[3]  # nothing to magnify: left as it is
    stddev = 0.1
    xs, rs = x.double().numpy().reshape(5, -1), (x_adv - x).double().numpy().reshape(5, -1)
    rms = np.sqrt((rs**2).sum(1) / 784)
    expected = xs.copy()
    for i in range(5):
        if rms[i] > 0:
            expected[i] = xs[i] + stddev * rs[i] / rms[i]
    unclipped = transfer.magnify(x, x_adv, stddev, clip=False).double().numpy().reshape(5, -1)
    np.testing.assert_allclose(unclipped, expected, atol=1e-6)
    distortion = np.sqrt(((unclipped - xs) ** 2).sum(1) / 784)
    np.testing.assert_allclose(distortion[[0, 1, 2, 4]], stddev, rtol=1e-5)
    assert distortion[3] == 0
    clipped = transfer.magnify(x, x_adv, stddev).double().numpy().reshape(5, -1)
    np.testing.assert_allclose(clipped, np.clip(expected, 0, 1), atol=1e-6)
    # the formula read with the plain L2 norm would give a distortion of stddev / 28 on 28x28 images
    literal = stddev * rs[0] / np.linalg.norm(rs[0])
    assert np.sqrt((literal**2).sum() / 784) == pytest.approx(stddev / 28)


def test_sweep_own_adversarial_error_matches_an_explicit_rescaling(models, examples):
    frame = transfer.sweep(examples, models, stddevs=(0.05,), seed=0)
    assert len(frame) == 4 * len(models)
    for name, model in models.items():
        ex = examples[name]
        r = (ex["x_adv"] - ex["x"]).double()
        rms = r.flatten(1).pow(2).mean(1).sqrt()
        rms = rms[:, None, None, None]
        scaled = (ex["x"] + torch.where(rms > 0, 0.05 * r / rms, r)).clamp(0, 1)
        own = frame[(frame["model"] == name) & (frame["perturbation"] == "own adversarial, rescaled")]["error %"]
        assert own.item() == pytest.approx(explicit_error(model, scaled.float(), ex["y"]))


def paper_tables() -> tuple[transfer.TransferTable, transfer.TransferTable]:
    """The paper's Tables 2 and 4 as TransferTables (ours = the paper's), with our row labels."""
    rows2 = {(f"noise stddev {k[6:]}" if k.startswith("noise-") else k): [*v[0], v[1]] for k, v in paper.TABLE2.items()}
    t2 = pd.DataFrame.from_dict(rows2, orient="index", columns=[*paper.TABLE2_COLUMNS, "distortion"])
    labels = [f"adversarial {m}" for m in paper.TABLE3_MODELS] + ["noise at the adversarial stddev"] + \
             [f"magnified {m}" for m in paper.TABLE3_MODELS] + ["noise stddev 0.1"]
    t4 = pd.DataFrame([[*v, 0.0] for v in paper.TABLE4.values()], index=labels,
                      columns=[*paper.TABLE4_COLUMNS, "distortion"])
    empty = pd.DataFrame()
    return transfer.TransferTable(t2, t2, empty), transfer.TransferTable(t4, t4, empty)


def test_findings_hold_in_the_papers_own_numbers():
    t2, t4 = paper_tables()
    found = transfer.findings(t2, t4)
    assert [f.holds for f in found] == [True] * len(found)  # each test states what the paper claims
    assert not any(f.note for f in found)
    errors = np.array([v[0] for k, v in paper.TABLE2.items() if not k.startswith("noise")])
    off_diagonal = errors[~np.eye(6, dtype=bool)].mean()
    assert found[0].paper.startswith(f"{off_diagonal:.1f}% vs ")
    t4_errors = np.array(list(paper.TABLE4.values())[:3])
    weaker = next(f for f in found
                  if f.claim.startswith("Table 4: transfer across training sets is weaker than Table 2"))
    assert weaker.paper == f"{t4_errors[~np.eye(3, dtype=bool)].mean():.1f}% vs {off_diagonal:.1f}%"


def test_off_diagonal_averages_only_the_transfer_cells():
    # the "magnified by the paper's factor" table of chapter 3, with its stated stddev per row beside the errors
    errors = np.array([[91.9, 78.4, 36.9], [85.5, 93.4, 41.9], [43.7, 40.2, 93.3]])
    frame = pd.DataFrame(errors, index=list(T4_MODELS), columns=list(T4_MODELS))
    six = errors[~np.eye(3, dtype=bool)]
    cells = transfer.off_diagonal(frame.assign(distortion=[0.05, 0.06, 0.07]))
    assert sorted(cells.index) == sorted((i, j) for i in T4_MODELS for j in T4_MODELS if i != j)
    assert cells.mean() == pytest.approx(six.mean())  # 54.4%, the six cells
    with_stddev = frame.assign(stddev=[0.089, 0.093, 0.092])
    with pytest.raises(ValueError, match=r"\['stddev'\] are neither a row's model"):
        transfer.off_diagonal(with_stddev)  # averaged in, the three stddevs would give (6 x 54.4 + 0.27) / 9 = 36.3%
    assert transfer.off_diagonal(with_stddev.drop(columns="stddev")).mean() == pytest.approx(six.mean())
    # rows of another prefix are skipped, and the prefix is taken off the keys
    prefixed = frame.rename(index=lambda m: f"magnified {m}")
    assert transfer.off_diagonal(prefixed).empty
    assert transfer.off_diagonal(prefixed, "magnified ").equals(transfer.off_diagonal(frame))
    with pytest.raises(TypeError, match="DataFrame"):
        transfer.off_diagonal(errors)


def test_raised_and_asymmetry_compare_cell_by_cell():
    before = pd.Series({("P", "Q"): 10.0, ("Q", "P"): 30.0})
    after = pd.Series({("Q", "P"): 20.0, ("P", "Q"): 50.0})  # the other order: matched by key, not position
    assert transfer.raised(before, after).to_dict() == {("P", "Q"): True, ("Q", "P"): False}
    with pytest.raises(ValueError, match="same, non-empty cells"):
        transfer.raised(before, after.iloc[:1])
    frame = pd.DataFrame([[100, 10, 20], [60, 100, 40], [70, 30, 100]], index=list("abc"), columns=list("abc"))
    # rows = examples made on; b's examples fool a 60% vs a's fool b 10%; c -> a 70 vs 20; c -> b 30 vs 40
    assert transfer.asymmetry(frame, list("abc")).to_dict() == {("b", "a"): True, ("c", "a"): True,
                                                                 ("c", "b"): False}
    with pytest.raises(ValueError, match="missing"):
        transfer.asymmetry(frame, ["a", "z"])


T2_MODELS = ("N100-100-10", "N200-200-10", "AE400-10")
T4_MODELS = ("P", "Q", "R")
T2_NOISE = ("noise stddev 0.1", "noise stddev 0.1, unclipped", "noise stddev 0.3", "noise stddev 0.3, unclipped")
T4_ROWS = (*[f"adversarial {m}" for m in T4_MODELS], transfer.MATCHING_NOISE, transfer.MATCHING_NOISE + ", unclipped",
           *[f"magnified {m}" for m in T4_MODELS], "noise stddev 0.1", "noise stddev 0.1, unclipped")


def hand_made(cross2: float = 30.0, ae_column: float = 20.0, noise2: dict | None = None, cross4: float = 10.0,
              noise4: float = 2.0, magnified: float = 50.0, noise_magnified: float = 3.0):
    """Tables 2 and 4 (the book's = the paper's) in which every claim holds with the defaults.

    Table 2: transfer `cross2` into the two sigmoid nets, `ae_column` into the autoencoder, noise 5% (or
    `noise2[row]`); Table 4: transfer `cross4`, noise `noise4` / `noise_magnified`, magnified `magnified`.
    """
    t2 = pd.DataFrame(cross2, index=[*T2_MODELS, *T2_NOISE], columns=[*T2_MODELS, "distortion"])
    t2["AE400-10"] = ae_column
    for m in T2_MODELS:
        t2.loc[m, m] = 100.0
    for row in T2_NOISE:
        t2.loc[row, list(T2_MODELS)] = (noise2 or {}).get(row, 5.0)
    t2["distortion"] = [0.05] * 3 + [0.1, 0.1, 0.3, 0.3]
    t4 = pd.DataFrame(cross4, index=list(T4_ROWS), columns=[*T4_MODELS, "distortion"])
    for k, m in enumerate(T4_MODELS):
        t4.loc[f"adversarial {m}", m] = 100.0
        t4.loc[f"magnified {m}", list(T4_MODELS)] = magnified
        t4.loc[f"magnified {m}", m] = 100.0
    t4.loc[[r for r in T4_ROWS if r.startswith(transfer.MATCHING_NOISE)], list(T4_MODELS)] = noise4
    t4.loc[["noise stddev 0.1", "noise stddev 0.1, unclipped"], list(T4_MODELS)] = noise_magnified
    t4["distortion"] = 0.05
    return (transfer.TransferTable(t2, t2.copy(), pd.DataFrame()),
            transfer.TransferTable(t4, t4.copy(), pd.DataFrame()))


def verdicts(t2, t4, sweep=None) -> dict[str, bool]:
    return {f.claim: f.holds for f in transfer.findings(t2, t4, sweep)}


def claim(found: dict, start: str, contains: str = "") -> str:
    (key,) = [k for k in found if k.startswith(start) and contains in k]
    return key


def test_hand_made_findings_each_verdict_flips_with_its_input():
    base = verdicts(*hand_made())
    assert len(base) == 12 and all(base.values())
    flips = {  # input change -> the claim it must flip
        "noise 0.1 clipped": (dict(noise2={"noise stddev 0.1": 20.0}),
                              ("Table 2: other models' examples fool", "than clipped noise of stddev 0.1 ")),
        "noise 0.3 unclipped": (dict(noise2={"noise stddev 0.3, unclipped": 20.0}),
                                ("Table 2: other models' examples fool", "unclipped noise of stddev 0.3")),
        "autoencoder": (dict(ae_column=40.0), ("Table 2: AE400-10 resists", "")),
        "same-data pair": (dict(cross4=35.0, magnified=60.0),
                           ("Table 4: transfer across training sets is weaker than between", "")),
        "above matching noise": (dict(noise4=12.0), ("Table 4: every cross-training-set cell is above clipped", "")),
        "magnification": (dict(magnified=8.0, noise_magnified=1.0), ("Table 4: magnifying", "")),
        "magnified above noise": (dict(noise_magnified=60.0), ("Table 4: every magnified", "above clipped")),
    }
    original2, original4 = hand_made()
    for what, (change, (start, contains)) in flips.items():
        t2, t4 = hand_made(**change)  # the change on both sides
        found = verdicts(t2, t4)
        key = claim(found, start, contains)
        assert found[key] is False, what
        # the change in the book's numbers only: the paper's (unchanged) still pass, so no note
        notes = {f.claim: f.note for f in transfer.findings(transfer.TransferTable(t2.ours, original2.paper, t2.details),
                                                            transfer.TransferTable(t4.ours, original4.paper, t4.details))}
        assert notes[key] == "", what
    # the test fails on the paper's side too: a note says so
    t2, t4 = hand_made(ae_column=40.0)
    noted = {f.claim: f.note for f in transfer.findings(t2, t4)}
    assert "fails on the paper's own numbers" in noted[claim(noted, "Table 2: AE400-10 resists")]


def test_the_sweep_finding_flips_when_noise_wins_once():
    rows = [{"model": m, "stddev": s, "perturbation": kind, "error %": value}
            for m in ("a", "b") for s in (0.05, 0.1)
            for kind, value in ((transfer.NOISE, 5.0), (transfer.NOISE_UNCLIPPED, 4.0), (transfer.OTHERS, 30.0))]
    sweep = pd.DataFrame(rows)
    found = transfer.findings(*hand_made(), sweep)
    assert len(found) == 13 and found[-1].holds is True and found[-1].ours.startswith("4/4 (model, stddev)")
    sweep.loc[(sweep["model"] == "b") & (sweep["perturbation"] == transfer.NOISE_UNCLIPPED), "error %"] = 50.0
    assert transfer.findings(*hand_made(), sweep)[-1].holds is False


def test_findings_refuse_bad_input():
    t2, t4 = hand_made()
    with pytest.raises(TypeError, match="TransferTable"):
        transfer.findings(t2.ours, t4)
    no_noise = transfer.TransferTable(t2.ours.drop(index=list(T2_NOISE)), t2.paper.drop(index=list(T2_NOISE)),
                                      pd.DataFrame())
    with pytest.raises(ValueError, match="noise rows"):
        transfer.findings(no_noise, t4)
    with pytest.raises(ValueError, match="same rows and columns"):
        transfer.findings(transfer.TransferTable(t2.ours, t2.paper.iloc[:3], pd.DataFrame()), t4)
    with pytest.raises(ValueError, match="not a model of table2"):
        transfer.findings(t2, t4, autoencoder="AE999")
    with pytest.raises(ValueError, match="perturbations"):
        transfer.findings(t2, t4, pd.DataFrame({"model": ["a"], "stddev": [0.1], "perturbation": ["x"],
                                                "error %": [1.0]}))
    with pytest.raises(ValueError, match="lacks the columns"):
        transfer.findings(t2, t4, pd.DataFrame({"model": ["a"]}))


def test_figures_fit_the_page_and_label_their_axes(examples):
    import matplotlib.pyplot as plt

    from lib import plots

    t2, t4 = paper_tables()
    sweep = pd.DataFrame([{"model": m, "stddev": s, "perturbation": kind, "error %": 10.0 * k}
                          for m in paper.TABLE1_MODELS for s in (0.05, 0.1)
                          for k, kind in enumerate(transfer.PERTURBATION_STYLE)])
    figures = {"Table 2 heatmaps": (transfer.heatmaps(t2, "Table 2"), plots.INLINE_DPI),
               "Table 4 heatmaps": (transfer.heatmaps(t4, "Table 4"), plots.INLINE_DPI),
               "sweep": (transfer.sweep_figure(sweep, title="sweep"), plots.INLINE_DPI),
               "noise panel": (transfer.noise_panel(examples, sweep, 0.1, source=SOURCES[0], n_images=5), 72)}
    for name, (fig, dpi) in figures.items():
        assert fig.get_size_inches()[0] <= 10, name
        size, text = plots.smallest_text(fig, dpi=dpi)
        assert size >= plots.MIN_PT, f"{name}: {text!r} is {size:.1f} pt on the page"
        assert plots.unlabelled_axes(fig) == [], name
        plt.close(fig)
    # the check itself: a figure 20 inches wide is shrunk to the page, and its 10 pt text with it
    fig, ax = plt.subplots(figsize=(20, 3))
    ax.plot([0, 1])
    ax.tick_params(labelsize=10)
    assert plots.smallest_text(fig)[0] == pytest.approx(10 * plots.PAGE_WIDTH_PX / (100 * fig.get_tightbbox().width),
                                                        rel=1e-6)
    assert plots.unlabelled_axes(fig) == ["axes 0"]
    plt.close(fig)


def test_bad_input_raises_value_error(models, examples):
    x = torch.zeros(2, 1, 28, 28)
    with pytest.raises(ValueError, match="stddev"):
        transfer.magnify(x, x, 0.0)
    with pytest.raises(ValueError, match="stddev"):
        transfer.magnify(x, x, float("nan"))
    with pytest.raises(ValueError, match="one shape"):
        transfer.magnify(x, x[:1], 0.1)
    with pytest.raises(ValueError, match="stddev"):
        transfer.noise_error(x, torch.zeros(2, dtype=torch.long), models, -0.1)
    with pytest.raises(ValueError, match="labels"):
        transfer.noise_error(x, torch.zeros(3, dtype=torch.long), models, 0.1)
    with pytest.raises(ValueError, match="non-empty"):
        transfer.cross_model_error({}, models)
    with pytest.raises(ValueError, match="non-empty"):
        transfer.cross_model_error(examples, {})
    with pytest.raises(ValueError, match="lacks"):
        transfer.cross_model_error({"a": {"x": x}}, models)
    failed = {**examples[SOURCES[0]], "success": torch.zeros(16, dtype=torch.bool)}
    with pytest.raises(ValueError, match="no successful"):
        transfer.cross_model_error({"a": failed}, models)
    other = {**examples[SOURCES[0]], "x": examples[SOURCES[0]]["x"].flip(0)}
    with pytest.raises(ValueError, match="other images"):
        transfer.sweep({"a": examples[SOURCES[0]], "b": other}, models)
    with pytest.raises(ValueError, match="n must be"):
        transfer.adversarial_sets(SOURCES, 0, train=True)
