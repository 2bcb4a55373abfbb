"""lib.peers: the unit conversion, a peer against the exact minimum, the verdicts, and the committed results."""
import json
import math

import numpy as np
import pytest
import torch

from lib import peers, zoo
from lib.attack import distortion
from lib.attack_reference import exact_min_distortion_linear
from lib.data import fixed_subset
from lib.peers import EXACT, OURS, PeerResult

from stand_ins import one_cpu_thread, random_linear, runner_up  # noqa: F401 (fixture)


def test_book_distortion_is_the_l2_norm_over_28():
    r = torch.zeros(1, 1, 28, 28)
    r[0, 0, :4, :4] = 0.1  # 16 pixels of 0.1: ||r||_2 = sqrt(16 * 0.01) = 0.4
    x0 = torch.zeros(1, 1, 28, 28)
    assert distortion(x0, x0 + r).item() == pytest.approx(0.4 / 28)  # what peers.measure reports
    assert distortion(x0, x0 + r).item() == pytest.approx(math.sqrt(16 * 0.01 / 784))
    model = random_linear(784, 10, torch.Generator().manual_seed(0))
    x = torch.full((1, 1, 28, 28), 0.5)
    target = model(x + r).argmax(1)
    dist, success = peers.measure(model, x, x + r, target)
    assert success.tolist() == [True] and dist[0] == pytest.approx(0.4 / 28, rel=1e-6)
    dist, success = peers.measure(model, x, x + r, (target + 1) % 10)  # not the label f gives: a failure
    assert success.tolist() == [False] and dist[0] == math.inf


def test_ddn_reaches_the_target_near_the_exact_minimum_of_a_linear_model():
    pytest.importorskip("foolbox")
    model = random_linear(784, 10, torch.Generator().manual_seed(1))
    x, _ = fixed_subset(8, train=False, seed=3)
    y = model(x).argmax(1)
    target = runner_up(model, x)
    result, x_adv = peers.run_peer(model, "random-linear", x, target, np.arange(8), "DDN", 300)
    exact = exact_min_distortion_linear(model, x, target).distortion.double().numpy()
    assert result.success.all() and (model(x_adv).argmax(1) == target).all() and (target != y).all()
    assert result.label == "DDN-300" and result.seconds > 0
    ratio = result.distortion / exact
    assert ratio.min() > 1 - 1e-4  # nothing beats the exact minimum
    assert ratio.max() < 1.05, ratio


def test_foolbox_fmn_projection_is_a_no_op_and_the_repair_projects():
    fb = pytest.importorskip("foolbox")
    import eagerpy as ep

    x0 = ep.astensor(torch.zeros(2, 1, 28, 28))
    x = ep.astensor(torch.full((2, 1, 28, 28), 0.1))  # ||x - x0|| = 2.8
    eps = ep.astensor(torch.tensor([1.0, 5.0]))
    norms = lambda z: (z - x0).raw.flatten(1).norm(dim=1).tolist()  # noqa: E731
    assert norms(fb.attacks.L2FMNAttack().project(x, x0, eps)) == pytest.approx([2.8, 2.8])  # the shipped bug
    assert norms(peers._fixed_fmn_class()().project(x, x0, eps)) == pytest.approx([1.0, 2.8])


def result(method: str, budget: int, dist, seconds: float = 1.0, model: str = "softmax-1e-4") -> PeerResult:
    """A hand-made result; inf distortions are failures."""
    dist = np.asarray(dist, dtype=float)
    return PeerResult(method, budget, model, peers.RULE, dist, np.isfinite(dist), seconds, np.arange(len(dist)))


def hand_made(ours=1.0, ddn_seconds=2.0, ours_seconds=1.0, exact=1.0, model="N100-100-10") -> list[PeerResult]:
    """Three images: ours, DDN at two budgets, BB, the exact QP; ours scaled by `ours`."""
    base = np.array([0.03, 0.04, 0.05])
    return [result(OURS, 10, base * ours, ours_seconds, model),
            result("DDN", 10, base * 1.2, ddn_seconds / 10, model),
            result("DDN", 100, base * 1.002, ddn_seconds, model),
            result("BB", 100, [0.03, math.inf, 0.05], 5.0, model),
            result(EXACT, 0, base / exact, 0.1, model)]


def test_summary_counts_failures_and_ratios():
    table = peers.summary(hand_made(ours=1.0))
    bb = table[table["method"] == "BB-100"].iloc[0]
    assert bb["success %"] == pytest.approx(100 * 2 / 3) and bb["mean distortion"] == pytest.approx(0.04)
    assert bb["median ratio to ours"] == pytest.approx(1.0)  # ratios 1, inf, 1
    ddn = table[table["method"] == "DDN-100"].iloc[0]
    assert ddn["median ratio to ours"] == pytest.approx(1.002) and ddn["s / image"] == pytest.approx(2 / 3)
    assert table[table["method"] == OURS].iloc[0]["mean ratio to exact"] == pytest.approx(1.0)
    assert list(table["method"])[0] == OURS  # ours first, then the peers in METHODS order


def test_findings_flip_with_their_inputs():
    def verdicts(results):
        return {f.claim.split(":")[0] if ":" in f.claim else f.claim[:20]: f.holds for f in peers.findings(results)}

    good = verdicts(hand_made(ours=1.0, ours_seconds=1.0, ddn_seconds=2.0))
    assert list(good.values()) == [True, True, True]
    # ours 2% above the best peer and the exact minimum on every image: both targets fail
    worse = verdicts(hand_made(ours=1.02))
    assert list(worse.values())[:2] == [False, False]
    # slower than DDN-100 (the smallest budget within 0.5% of ours): the speed verdict flips
    slow = verdicts(hand_made(ours_seconds=3.0, ddn_seconds=2.0))
    assert list(slow.values()) == [True, True, False]
    # DDN-100 is the match: DDN-10 (20% above) is not
    assert peers.ddn_match(hand_made()).label == "DDN-100"
    assert peers.ddn_match(hand_made(ours=0.9)) is None  # no DDN within 0.5%: nothing to time against


def test_fast_attack_verdict_takes_its_smallest_budget_at_the_distortion_target():
    group = hand_made()  # DDN-100: 1.002 x ours in 2 s; BB misses image 2
    base = np.array([0.03, 0.04, 0.05])
    fast = [result(peers.FAST, budget, base * ratio, seconds, "N100-100-10")
            for budget, ratio, seconds in [(5, 1.02, 0.2), (20, 1.003, 0.5), (80, 1.0, 1.5)]]
    assert peers.fast_choice(group + fast).label == "ours-fast-20"  # 5 steps: 2% above the best peer
    assert peers.best_peer(group + fast) == pytest.approx(peers.best_peer(group))  # ours are not peers
    verdict = peers.fast_finding("N100-100-10", group + fast)
    assert verdict.holds and "ours-fast-20" in verdict.ours and "DDN-100" in verdict.ours  # 2 s / 0.5 s = 4x
    slow = [result(peers.FAST, 20, base * 1.003, 1.5, "N100-100-10")]
    assert not peers.fast_finding("N100-100-10", group + slow).holds  # 2 s / 1.5 s < 2x
    far = [result(peers.FAST, 20, base * 1.02, 0.1, "N100-100-10")]
    assert peers.fast_choice(group + far) is None and not peers.fast_finding("N100-100-10", group + far).holds
    table = peers.fast_table(group + fast)
    assert list(table["method"]) == ["ours-fast-5", "ours-fast-20", "ours-fast-80"]
    assert list(table["within 1.005"]) == ["no", "yes", "yes"]
    assert table["speed-up"].tolist() == pytest.approx([2 / 0.2, 2 / 0.5, 2 / 1.5])
    claims = [f.claim for f in peers.findings(group + fast)]
    assert claims[-1].startswith("N100-100-10: the fast attack")


def test_best_peer_takes_the_closest_success_per_image():
    group = hand_made(ours=1.0)
    assert peers.best_peer(group) == pytest.approx([0.03, 0.04 * 1.002, 0.05])
    assert np.median(peers.ratio_to_best_peer(group)) == pytest.approx(1.0)
    other = PeerResult("DDN", 10, "N100-100-10", peers.RULE, np.ones(3), np.ones(3, bool), 1.0, np.arange(1, 4))
    with pytest.raises(ValueError, match="different images"):
        peers.summary([group[0], other])


def test_load_checks_provenance(tmp_path):
    run = peers.PeerRun("softmax-1", np.array([3, 7]), np.array([1, 2]), np.array([4, 5]),
                        [result(OURS, 10, [0.01, math.inf], model="softmax-1")],
                        {k: 0 for k in peers.REQUIRED_PROVENANCE})
    path = peers.save(run, tmp_path)
    loaded = peers.load("softmax-1", tmp_path)
    assert loaded.results[0].distortion[1] == math.inf and loaded.results[0].success.tolist() == [True, False]
    record = json.loads(path.read_text())
    del record["provenance"]["weights"]
    path.write_text(json.dumps(record))
    with pytest.raises(ValueError, match="provenance lacks weights"):
        peers.load("softmax-1", tmp_path)
    with pytest.raises(FileNotFoundError, match="bench_peers"):
        peers.load("Conv", tmp_path)


@pytest.mark.parametrize("name", peers.MODELS)
def test_committed_results_are_current_and_complete(name):
    run = peers.load(name)
    assert peers.is_current(run), f"{name}: retrained model or changed attack; rerun benchmarks/bench_peers.py"
    assert run.provenance["threads"] == 1 and run.provenance["versions"]["foolbox"]
    assert len(run.images) >= 40 and (run.targets != run.labels).all()
    model = zoo.load(name, progress=False)
    x, y = fixed_subset(run.provenance["requested_images"], train=False, seed=run.provenance["seed"])
    with torch.no_grad():
        logits = model(x)
    correct = logits.argmax(1) == y
    assert np.array_equal(np.flatnonzero(correct.numpy()).size, len(run.images))
    assert np.array_equal(runner_up(model, x[correct]).numpy(), run.targets)  # the runner-up rule
    methods = {r.method for r in run.results}
    assert {OURS, peers.FAST, "DDN", "BB", "C&W", "FMN", "FAB"} <= methods
    assert (EXACT in methods) == (name in peers.LINEAR_MODELS)
