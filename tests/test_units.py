"""Section 3's inspection tools (lib/units.py), checked against brute force, hand-made examples and scipy."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from torch import nn

from lib import units


@pytest.fixture(scope="module")
def acts() -> torch.Tensor:
    """50 'images' x 7 'units' of distinct random activations."""
    return torch.randn(50, 7, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def test_top_k_are_the_maxima_by_a_python_sort(acts):
    directions = units.random_directions(7, 5, seed=3)
    k = 6
    top = units.top_k_images(acts, directions, k)
    assert top.indices.shape == (5, k) and top.scores.shape == (5, k)
    for m, v in enumerate(directions.tolist()):
        projections = [sum(a * b for a, b in zip(row, v)) for row in acts.tolist()]
        expected = sorted(range(len(projections)), key=lambda i: -projections[i])[:k]
        assert top.indices[m].tolist() == expected
        assert top.scores[m].tolist() == pytest.approx([projections[i] for i in expected])


def test_unit_top_k_is_the_sorted_column(acts):
    top = units.top_k_images(acts, units.basis_directions(7, [2, 5]), 4)
    for row, unit in enumerate([2, 5]):
        column = acts[:, unit].numpy()
        assert top.indices[row].tolist() == list(np.argsort(-column)[:4])
        assert top.scores[row].tolist() == pytest.approx(list(np.sort(column)[::-1][:4]))
    single = units.top_k_images(acts, units.basis_directions(7, [2])[0], 4)
    assert single.indices.tolist() == top.indices[0].tolist()


def test_random_directions_are_unit_norm_and_seeded():
    a = units.random_directions(30, 12, seed=1)
    assert a.shape == (12, 30)
    assert np.allclose(np.linalg.norm(a.numpy(), axis=1), 1.0)
    assert torch.equal(a, units.random_directions(30, 12, seed=1))
    assert not torch.allclose(a, units.random_directions(30, 12, seed=2))
    # isotropic: over many directions each coordinate's second moment is 1/dim
    many = units.random_directions(10, 20000, seed=0).numpy()
    assert np.allclose((many ** 2).mean(0), 0.1, atol=0.01)
    assert np.abs(many.mean(0)).max() < 0.02


def test_basis_directions_are_rows_of_the_identity():
    assert units.basis_directions(4, [3, 0]).tolist() == [[0, 0, 0, 1], [1, 0, 0, 0]]


def test_layer_activations_match_a_hook_on_the_full_model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 5), nn.Sigmoid(), nn.Linear(5, 3)).eval()
    x = torch.rand(9, 1, 4, 4)
    seen = []
    handle = model[2].register_forward_hook(lambda mod, inp, out: seen.append(out))
    with torch.no_grad():
        model(x)
    handle.remove()
    got = units.layer_activations(model, 2, x, batch_size=4)
    assert got.shape == (9, 5) and got.dtype == torch.float64
    assert torch.allclose(got.float(), seen[0], atol=1e-6)
    assert model[1].weight.dtype == torch.float32  # the model itself is not converted


def test_usable_units_drop_dead_and_constant_units():
    a = torch.tensor([[0.0, 1.0, 3.0], [0.0, 1.0, 2.0], [0.0, 1.0, 0.0], [0.0, 1.0, 0.0]])
    assert units.usable_units(a, 2).tolist() == [False, False, True]
    assert units.usable_units(a, 3).tolist() == [False, False, False]  # the 3rd largest of unit 2 is its minimum


def test_label_purity_hand_examples():
    sets = torch.tensor([[1, 1, 2, 3], [4, 4, 4, 4], [0, 1, 2, 3], [5, 5, 6, 6]])
    assert units.label_purity(sets).tolist() == [0.5, 1.0, 0.25, 0.5]


def test_mean_pairwise_cosine_hand_example():
    e1, e2 = [1.0, 0.0], [0.0, 1.0]
    feats = torch.tensor([[e1, e1, e2], [e1, [2.0, 0.0], [3.0, 0.0]], [e1, [-1.0, 0.0], e2]])
    # pairs: (1, 0, 0) -> 1/3; all parallel -> 1; (-1, 0, 0) -> -1/3
    assert units.mean_pairwise_cosine(feats).tolist() == pytest.approx([1 / 3, 1.0, -1 / 3])


def test_coherence_uses_labels_and_centred_reference_features():
    labels = torch.tensor([0, 0, 1, 1])
    ref = torch.tensor([[2.0, 1.0], [2.0, 1.0], [0.0, 1.0], [0.0, 1.0]])  # mean (1, 1): centred rows +-e1
    table = units.coherence(torch.tensor([[0, 1], [0, 2]]), labels, ref)
    assert table["purity"].tolist() == [1.0, 0.5]
    assert table["cosine"].tolist() == pytest.approx([1.0, -1.0])
    raw = units.coherence(torch.tensor([[0, 2]]), labels, ref, center=False)
    assert raw["cosine"].item() == pytest.approx(1 / math.sqrt(5))
    both = units.coherence(torch.tensor([[0, 2]]), labels, {"r": ref, "s": -ref}, center=False)
    assert list(both.columns) == ["purity", "cosine:r", "cosine:s"]
    assert both["cosine:s"].item() == pytest.approx(1 / math.sqrt(5))


def test_random_image_sets_are_distinct_and_seeded():
    sets = units.random_image_sets(30, 40, 10, seed=5)
    assert sets.shape == (40, 10)
    assert all(len(set(row.tolist())) == 10 for row in sets)
    assert sets.min() >= 0 and sets.max() < 30
    assert torch.equal(sets, units.random_image_sets(30, 40, 10, seed=5))


def test_permutation_test_matches_exact_enumeration():
    a, b = np.array([1.0, 2.5, 3.0, 4.0]), np.array([0.0, 0.5, 2.0, 1.0])
    pooled, observed = np.concatenate([a, b]), abs(a.mean() - b.mean())
    splits = list(itertools.combinations(range(8), 4))
    exact = np.mean([abs(pooled[list(s)].mean() - np.delete(pooled, list(s)).mean()) >= observed - 1e-12
                     for s in splits])
    assert units.permutation_test(a, b, n_permutations=20000, seed=0) == pytest.approx(exact, abs=0.01)
    assert units.permutation_test(a, b, 500, seed=1) == units.permutation_test(a, b, 500, seed=1)


def test_cohens_d_and_bootstrap_interval():
    a, b = np.array([2.0, 4.0, 6.0]), np.array([1.0, 2.0, 3.0, 4.0])
    pooled = math.sqrt((2 * 4.0 + 3 * (5 / 3)) / 5)
    assert units.cohens_d(a, b) == pytest.approx((4.0 - 2.5) / pooled)
    lo, hi = units.bootstrap_mean_diff_ci([1.0, 1.0, 1.0], [0.25, 0.25], n_boot=100)
    assert lo == hi == 0.75  # constant samples: every resample has the same difference
    rng = np.random.default_rng(0)
    x, y = rng.normal(1.0, 1.0, 400), rng.normal(0.0, 1.0, 400)
    lo, hi = units.bootstrap_mean_diff_ci(x, y, n_boot=2000)
    half_width = 1.96 * math.sqrt(x.var(ddof=1) / 400 + y.var(ddof=1) / 400)  # the normal-theory interval
    assert lo == pytest.approx(x.mean() - y.mean() - half_width, abs=0.03)
    assert hi == pytest.approx(x.mean() - y.mean() + half_width, abs=0.03)


def test_binary_probe_separates_and_compose_chains():
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(400, 3, generator=g)
    positive = feats[:, 0] > 0.3
    head = units.train_binary_probe(feats, positive, epochs=30, lr=0.05, progress=False)
    with torch.no_grad():
        assert (head(feats).argmax(1).bool() == positive).float().mean() > 0.97
    torch.manual_seed(1)
    trunk = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.ReLU())
    frozen = units.feature_extractor(trunk, 2)
    assert not any(p.requires_grad for p in frozen.parameters())
    assert all(p.requires_grad for p in trunk.parameters())  # the original is untouched
    model = units.compose(frozen, head)
    x = torch.rand(5, 1, 2, 2)
    with torch.no_grad():
        assert torch.allclose(model(x), head(trunk(x)))


@pytest.mark.parametrize("call", [
    lambda: units.top_k_images(torch.zeros(5, 3), torch.zeros(4), 2),  # dimension mismatch
    lambda: units.top_k_images(torch.zeros(5, 3), torch.zeros(3), 6),  # k > N
    lambda: units.top_k_images(torch.zeros(5, 3), torch.zeros(3), 0),
    lambda: units.top_k_images(torch.full((5, 3), float("nan")), torch.zeros(3), 2),
    lambda: units.random_directions(0, 3, seed=0),
    lambda: units.random_directions(3, -1, seed=0),
    lambda: units.basis_directions(3, [3]),
    lambda: units.layer_activations(nn.Sequential(nn.Flatten()), 1, torch.zeros(2, 1, 2, 2)),
    lambda: units.layer_activations(nn.Linear(2, 2), 0, torch.zeros(2, 2)),
    lambda: units.label_purity(torch.tensor([[0.5, 1.0]])),
    lambda: units.mean_pairwise_cosine(torch.zeros(2, 1, 3)),
    lambda: units.coherence(torch.tensor([[0, 9]]), torch.tensor([0, 1]), torch.zeros(2, 3)),
    lambda: units.coherence(torch.tensor([[0, 1]]), torch.tensor([0, 1, 2]), torch.zeros(2, 3)),
    lambda: units.random_image_sets(5, 2, 6, seed=0),
    lambda: units.permutation_test([1.0], [2.0, 3.0]),
    lambda: units.cohens_d([1.0, float("inf")], [2.0, 3.0]),
    lambda: units.train_binary_probe(torch.zeros(4, 2), torch.ones(4, dtype=torch.bool)),
])
def test_bad_input_raises_value_error(call):
    with pytest.raises(ValueError):
        call()


def test_select_units_keeps_usable_ones_seeded():
    a = torch.zeros(20, 6, dtype=torch.float64)
    a[:, [1, 3, 4, 5]] = torch.rand(20, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert units.select_units(a, 3, max_units=10).tolist() == [1, 3, 4, 5]
    some = units.select_units(a, 3, max_units=2, seed=4)
    assert len(some) == 2 and set(some.tolist()) <= {1, 3, 4, 5} and some.tolist() == sorted(some.tolist())
    assert torch.equal(some, units.select_units(a, 3, max_units=2, seed=4))


def test_verdicts_apply_bonferroni_by_hand():
    import pandas as pd
    table = pd.DataFrame({"a": ["u", "u"], "b": ["d", "r"], "diff": [-0.1, 0.3],
                          "p_value": [0.03, 0.001], "cohens_d": [-0.5, 1.5]})
    out = units.verdicts(table, alpha=0.05)  # level 0.025: the first test is not significant
    assert out.attrs["bonferroni_level"] == 0.025
    assert out["verdict"].tolist() == ["no detectable difference", "a > b"]
    assert units.verdicts(table, alpha=0.1)["verdict"].tolist() == ["a < b", "a > b"]


# ----------------------------------------------------------------------------------------------
# units.findings: each verdict follows its inputs
# ----------------------------------------------------------------------------------------------

STATS = ("purity", "cosine:N200", "cosine:AE400")
PAIRS = (("units", "directions"), ("units", "random sets"), ("directions", "random sets"))


def hand_tests(**flips) -> "pd.DataFrame":
    """A `verdicts`-like table for 2 layers x 3 scores x 3 pairs: groups beat chance, units ~ directions.

    flips: {"layer|statistic|a|b": verdict} overrides single rows.
    """
    import pandas as pd

    rows = []
    for layer in ("L1", "L2"):
        for a, b in PAIRS:
            for stat in STATS:
                verdict = "no detectable difference" if b == "directions" else "a > b"
                verdict = flips.get(f"{layer}|{stat}|{a}|{b}", verdict)
                diff = {"a > b": 0.5, "a < b": -0.1, "no detectable difference": 0.01}[verdict]
                rows.append({"layer": layer, "statistic": stat, "a": a, "b": b, "diff": diff,
                             "ci_low": diff - 0.03, "ci_high": diff + 0.03, "cohens_d": 10 * diff,
                             "p_value": 1e-4 if verdict != "no detectable difference" else 0.5, "verdict": verdict})
    return pd.DataFrame(rows)


GOOD_PROBE = units.ProbeAttack(attacked=30, succeeded=30, mean_distortion=0.05, reference_distortion=0.052)


def holds(found) -> list:
    return [f.holds for f in found]


def test_findings_all_hold_on_agreeing_tests():
    found = units.findings(hand_tests(), GOOD_PROBE)
    assert holds(found) == [True, True, True, True, None, True]
    assert "6 of 6" in found[0].ours  # 2 layers x 3 scores
    assert "no detectable difference in 4" in found[2].ours  # 2 layers x 2 semantic scores
    assert found[4].note  # the untested ImageNet claim says why


@pytest.mark.parametrize("flip, index", [
    ("L2|cosine:N200|units|random sets", 0),  # units no better than chance somewhere
    ("L1|purity|directions|random sets", 1),  # directions no better than chance somewhere
])
def test_findings_chance_verdicts_flip(flip, index):
    found = units.findings(hand_tests(**{flip: "no detectable difference"}), GOOD_PROBE)
    expected = [True, True, True, True, None, True]
    expected[index] = False
    assert holds(found) == expected
    assert flip.split("|")[0] in found[index].note


def test_findings_units_ahead_semantically_breaks_both_readings():
    found = units.findings(hand_tests(**{"L1|purity|units|directions": "a > b"}), GOOD_PROBE)
    assert holds(found)[2:4] == [False, False]
    assert "L1 by purity" in found[2].note and "units more coherent in 1" in found[2].ours


def test_findings_units_ahead_only_in_low_level_score():
    found = units.findings(hand_tests(**{"L2|cosine:AE400|units|directions": "a > b"}), GOOD_PROBE)
    assert holds(found)[2:4] == [True, False]  # semantic reading holds, the all-scores reading does not
    assert "L2 by cosine:AE400" in found[3].note


def test_findings_directions_ahead_do_not_contradict_the_claim():
    found = units.findings(hand_tests(**{"L1|purity|units|directions": "a < b"}), GOOD_PROBE)
    assert holds(found)[2:4] == [True, True]
    assert "directions in 1" in found[2].ours


def test_findings_without_low_level_scores_has_no_all_scores_row():
    only_semantic = hand_tests()
    only_semantic = only_semantic[only_semantic["statistic"] != "cosine:AE400"]
    found = units.findings(only_semantic, GOOD_PROBE)
    assert len(found) == 5 and holds(found) == [True, True, True, None, True]


@pytest.mark.parametrize("probe, expected", [
    (GOOD_PROBE, True),
    (units.ProbeAttack(30, 29, 0.05, 0.052), False),  # one attack failed
    (units.ProbeAttack(30, 30, 0.2, 0.052), False),  # perceptible: above the paper's Table 1 range
    (units.ProbeAttack(30, 0, float("nan"), 0.052), False),  # nothing succeeded
])
def test_findings_probe_verdict(probe, expected):
    assert units.findings(hand_tests(), probe)[-1].holds is expected
    assert units.findings(hand_tests(), probe, max_distortion=0.3)[-1].holds is (probe.succeeded == 30)


def test_findings_accept_the_real_pipeline_output():
    import pandas as pd

    rng = np.random.default_rng(0)
    group = lambda mean: pd.DataFrame({s: rng.normal(mean, 0.1, 40) for s in ("purity", "cosine:N200")})
    groups = {"units": group(0.8), "directions": group(0.8), "random sets": group(0.3)}
    tests = units.verdicts(units.coherence_comparisons(groups, list(PAIRS), n_permutations=300, n_boot=300)
                           .assign(layer="L"))
    found = units.findings(tests, GOOD_PROBE)
    assert holds(found) == [True, True, True, None, True]


@pytest.mark.parametrize("call, message", [
    (lambda: units.findings(hand_tests().drop(columns="verdict"), GOOD_PROBE), "columns"),
    (lambda: units.findings(hand_tests().replace({"verdict": {"a > b": "yes"}}), GOOD_PROBE), "unknown verdicts"),
    (lambda: units.findings(hand_tests().query("b != 'directions'"), GOOD_PROBE), "no comparison"),
    (lambda: units.findings(hand_tests(), {"attacked": 30}), "ProbeAttack"),
    (lambda: units.findings(hand_tests(), GOOD_PROBE, semantic=("cosine:VGG",)), "semantic"),
    (lambda: units.findings([1, 2], GOOD_PROBE), "DataFrame"),
    (lambda: units.ProbeAttack(30, 31, 0.05, 0.05), "succeeded"),
    (lambda: units.ProbeAttack(30, 30, float("nan"), 0.05), "mean_distortion"),
    (lambda: units.ProbeAttack(30.0, 30, 0.05, 0.05), "attacked"),
])
def test_findings_bad_input_says_what_is_wrong(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_figures_fit_the_page_column_with_labelled_axes():
    import matplotlib.pyplot as plt
    import pandas as pd

    images = torch.rand(20, 1, 28, 28)
    fig = units.top_k_gallery(images, [torch.arange(10), torch.arange(10, 20)], ["unit 0", "direction 0"],
                              suptitle="a title\non two lines")
    assert fig.get_figwidth() <= 7.2
    plt.close(fig)
    rng = np.random.default_rng(0)
    table = lambda: pd.DataFrame({s: rng.random(30) for s in STATS})
    fig = units.coherence_distributions({"L1": {"units": table(), "directions": table()},
                                         "L2": {"units": table(), "directions": table()}})
    assert fig.get_figwidth() <= 7.2 and len(fig.legends) == 1  # one legend, outside the panels
    for ax in fig.axes:
        assert ax.get_xlabel() and ax.get_ylabel() and ax.get_legend() is None
    plt.close(fig)


def test_findings_judge_imperceptible_by_the_visibility_measure():
    seen = units.ProbeAttack(30, 30, 0.05, 0.052, invisible=0)
    found = units.findings(hand_tests(), seen)
    assert found[-1].claim.endswith("imperceptible") and found[-1].holds is False
    assert found[-2].holds is True  # as small as Table 1's all the same
    assert units.findings(hand_tests(), units.ProbeAttack(30, 30, 0.05, 0.052, invisible=30))[-1].holds is True
    with pytest.raises(ValueError, match="invisible"):
        units.ProbeAttack(30, 20, 0.05, 0.052, invisible=21)
