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
    assert {OURS, peers.FAST, peers.WALK, peers.WALK_DDN, "DDN", "BB", "C&W", "FMN", "FAB"} <= methods
    assert run.provenance["walk_versions"] == peers.walk_versions(), "a walk changed: rerun benchmarks/bench_peers.py"
    assert (EXACT in methods) == (name in peers.LINEAR_MODELS)


def test_passes_are_counted_for_ours_and_a_peer_and_ddn_makes_one_gradient_per_step():
    pytest.importorskip("foolbox")
    model = random_linear(784, 10, torch.Generator().manual_seed(2))
    x, _ = fixed_subset(4, train=False, seed=5)
    target = runner_up(model, x)
    ddn, _ = peers.run_peer(model, "random-linear", x, target, np.arange(4), "DDN", 30)
    assert ddn.gradients == 30  # Foolbox's DDN: one gradient per image and step
    ours, x_adv = peers.run_own(model, "random-linear", x, target, np.arange(4), OURS, 4, "runner-up")
    assert ours.gradients > 4 and ours.forwards > 0 and ours.success.all()
    # the trace: one point after each of the 4 runs of the c search and one after the refinement
    assert len(ours.trace) == 5 and [g for g, _ in ours.trace] == sorted(g for g, _ in ours.trace)
    assert ours.trace[-1][0] <= ours.gradients
    assert ours.trace[-1][1] == pytest.approx(ours.distortion.tolist(), rel=1e-5)


def test_walk_from_ddn_adds_its_start_and_never_ends_farther_than_it():
    pytest.importorskip("foolbox")
    model = random_linear(784, 10, torch.Generator().manual_seed(2))
    x, _ = fixed_subset(4, train=False, seed=5)
    target = runner_up(model, x)
    with pytest.raises(ValueError, match="starting point"):
        peers.run_own(model, "random-linear", x, target, np.arange(4), peers.WALK_DDN, 3, "runner-up")
    ddn, start = peers.run_peer(model, "random-linear", x, target, np.arange(4), *peers.BB_START)
    walked, _ = peers.run_own(model, "random-linear", x, target, np.arange(4), peers.WALK_DDN, 3, "runner-up",
                              start=start, start_cost=ddn.cost)
    assert walked.success.all() and (walked.distortion <= ddn.distortion * (1 + 1e-6)).all()
    exact = exact_min_distortion_linear(model, x, target).distortion.double().numpy()
    assert (walked.distortion / exact).max() < 1.01  # linear: the walk's polishes reach the exact minimum
    assert walked.gradients > ddn.gradients and walked.seconds > ddn.seconds and "started from" in walked.note
    assert len(walked.trace) == 3 and walked.trace[0][0] > ddn.gradients  # three runs, counted after DDN's


def test_alignment_is_one_at_the_exact_minimum_of_a_linear_model_and_below_one_elsewhere():
    model = random_linear(784, 10, torch.Generator().manual_seed(3))
    x, _ = fixed_subset(6, train=False, seed=1)
    target = runner_up(model, x)
    exact = exact_min_distortion_linear(model, x, target)
    assert peers.alignment(model, x, exact.x_min, target) == pytest.approx(np.ones(6), abs=1e-3)
    noisy = (exact.x_min + 0.02 * torch.randn(exact.x_min.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    assert (peers.alignment(model, x, noisy, target) < 0.9).all()


def test_sharp_loss_reaches_the_exact_minimum_of_a_linear_model():
    model = random_linear(784, 10, torch.Generator().manual_seed(4))
    x, _ = fixed_subset(6, train=False, seed=2)
    target = runner_up(model, x)
    sharp, _ = peers.run_own(model, "random-linear", x, target, np.arange(6), peers.SHARP, 10, "runner-up")
    exact = exact_min_distortion_linear(model, x, target).distortion.double().numpy()
    assert sharp.success.all() and sharp.method == peers.SHARP
    assert (sharp.distortion / exact).max() < 1.01 and (sharp.distortion / exact).min() > 1 - 1e-4


def test_saved_passes_trace_alignment_and_rule_come_back(tmp_path):
    found = result(OURS, 10, [0.01, 0.02], model="efficientnet-lite0")
    found.rule, found.gradients, found.forwards = "ostrich", 1130.5, 52.0
    found.trace, found.alignment = [(100.0, [math.inf, 0.03]), (200.0, [0.015, 0.02])], np.array([0.5, 0.9])
    run = peers.PeerRun("efficientnet-lite0", np.array([0, 1]), np.array([281, 967]), np.array([9, 9]), [found],
                        {k: 0 for k in peers.REQUIRED_PROVENANCE}, rule="ostrich")
    path = peers.save(run, tmp_path)
    assert path.name == "efficientnet-lite0_ostrich.json"
    back = peers.load("efficientnet-lite0", tmp_path, "ostrich").results[0]
    assert (back.rule, back.gradients, back.forwards) == ("ostrich", 1130.5, 52.0)
    assert back.trace == [(100.0, [math.inf, 0.03]), (200.0, [0.015, 0.02])]
    assert back.alignment.tolist() == [0.5, 0.9]
    with pytest.raises(ValueError, match="under rule"):
        path.rename(tmp_path / "efficientnet-lite0_runner-up.json")
        peers.load("efficientnet-lite0", tmp_path, "runner-up")


def imagenet_run(rule: str, ours: float, ours_gradients: float, ddn_gradients=(100, 300, 1000)) -> peers.PeerRun:
    """Two photos: ours scaled by `ours` against DDN at three budgets (the last the best peer)."""
    base = np.array([0.0012, 0.0010])
    results = [result(OURS, 10, base * ours, model="efficientnet-lite0")]
    results[0].gradients = ours_gradients
    for budget, scale in zip(ddn_gradients, (1.2, 1.05, 1.0)):
        results.append(result("DDN", budget, base * scale, model="efficientnet-lite0"))
        results[-1].gradients = budget
    return peers.PeerRun("efficientnet-lite0", np.arange(2), np.zeros(2), np.ones(2), results, rule=rule)


def test_imagenet_findings_judge_distortion_and_gradients_toward_each_target():
    good = peers.imagenet_findings([imagenet_run("ostrich", 1.0, 900), imagenet_run("runner-up", 1.004, 500)])
    assert [f.holds for f in good] == [True, True]
    far = peers.imagenet_findings([imagenet_run("ostrich", 1.03, 900), imagenet_run("runner-up", 1.0, 500)])
    assert [f.holds for f in far] == [False, True] and "ostrich (1.0300)" in far[0].note
    # as close as DDN-1000 but with more gradient evaluations than it
    costly = peers.imagenet_findings([imagenet_run("ostrich", 1.0, 1200), imagenet_run("runner-up", 1.0, 500)])
    assert [f.holds for f in costly] == [True, False]
    # DDN-300 is within 0.5% of ours at 1.05: ours must beat 300 gradients
    near = peers.imagenet_findings([imagenet_run("ostrich", 1.05, 400), imagenet_run("runner-up", 1.05, 200)])
    assert [f.holds for f in near] == [False, False] and "DDN-300 300" in near[1].ours
    table = peers.imagenet_table(imagenet_run("ostrich", 1.0, 900))
    assert table["median ratio to best peer"].tolist() == pytest.approx([1.0, 1.2, 1.05, 1.0])
    assert table["gradients / image"].tolist() == [900, 100, 300, 1000]


def walks_run(rule: str, walk, walk_ddn, walk_gradients: float = 900, bb=(1.0, 1.0)) -> peers.PeerRun:
    """imagenet_run's two photos with Brendel-Bethge and the two walks added, at per-photo scales of its base."""
    run = imagenet_run(rule, 1.3, 900)
    base = np.array([0.0012, 0.0010])
    for method, scale, gradients in (("BB", bb, 200), (peers.WALK, walk, walk_gradients), (peers.WALK_DDN, walk_ddn, 500)):
        run.results.append(result(method, 21, base * np.asarray(scale), model="efficientnet-lite0"))
        run.results[-1].gradients = gradients
    return run


def test_imagenet_walks_decide_what_chapter_7_says_of_the_walks():
    walks = peers.imagenet_walks([walks_run("ostrich", [0.99, 0.98], [0.96, 0.962], bb=(0.96, 0.96)),
                                  walks_run("runner-up", [0.99, 0.99], [0.99, 0.99], bb=(0.99, 0.99))])
    assert walks.rules == ["ostrich", "runner-up"]
    assert walks.met == {peers.WALK: ["runner-up"], peers.WALK_DDN: ["ostrich", "runner-up"]}
    assert walks.met_phrase(peers.WALK) == "toward the runner-up but not toward ostrich"
    assert walks.met_phrase(peers.WALK_DDN) == "toward both targets" and not walks.both_met and not walks.same_targets
    assert walks.ostrich_ratios[peers.WALK] == pytest.approx([0.99 / 0.96, 0.98 / 0.96]) and walks.own_farther == 2
    # DDN-1000, DDN's closest, is 1.5% above ours-walk's mean: no DDN budget matches it
    assert walks.match is None and walks.largest_ddn.label == "DDN-1000" and walks.before_largest.label == "DDN-300"
    assert walks.mean_gap(walks.largest_ddn) == pytest.approx(0.0022 / (0.0012 * 0.99 + 0.0010 * 0.98) - 1)
    assert walks.ddn_change == pytest.approx(1 / 1.05 - 1) and not walks.ddn_stopped
    assert walks.unmatched == [peers.WALK, peers.WALK_DDN]  # no DDN within 0.5% of either, toward either target
    near = peers.imagenet_walks([walks_run("ostrich", [1.002, 1.0], [1.0, 1.0], walk_gradients=2000),
                                 walks_run("runner-up", [1.0, 1.0], [1.0, 1.0])])
    assert near.both_met and near.same_targets and near.met_phrase(peers.WALK) == "toward both targets"
    assert near.match.label == "DDN-1000" and near.unmatched == []  # matched: DDN-1000 is as close as both walks
    neither = peers.imagenet_walks([walks_run("ostrich", [1.1, 1.1], [1.1, 1.1]),
                                    walks_run("runner-up", [1.1, 1.1], [1.1, 1.1])])
    assert neither.met_phrase(peers.WALK) == "toward neither target" and neither.same_targets
    with pytest.raises(ValueError, match="ostrich run"):
        peers.imagenet_walks([walks_run("runner-up", [1.0, 1.0], [1.0, 1.0])])
    lacking = walks_run("ostrich", [1.0, 1.0], [1.0, 1.0])
    lacking.results = [r for r in lacking.results if r.method != peers.WALK_DDN]
    with pytest.raises(ValueError, match="lack these walks"):
        peers.imagenet_walks([lacking])


def test_committed_imagenet_walks_read_the_committed_comparison():
    runs = peers.load_imagenet()
    walks = peers.imagenet_walks(runs)
    verdicts = {f.key: f.holds for f in peers.imagenet_findings(runs)}
    for method in (peers.WALK, peers.WALK_DDN):  # met toward every rule exactly when the finding holds
        assert (walks.met[method] == walks.rules) == verdicts[f"imagenet-vs-peers:{peers.IMAGENET_NETWORK}/{method}"]
    assert walks.largest_ddn.budget == max(peers.IMAGENET_BUDGETS["DDN"])


def test_sharp_temperature_is_the_one_chosen_on_the_validation_photos():
    from lib import attack, natural_images

    record = json.loads((peers.IMAGENET_DIR / "sharp_temperature.json").read_text())
    assert set(record["photos"]).isdisjoint(natural_images.load_attacks(record["network"], "ostrich").photos)
    means = peers.sharp_validation(record)
    chosen = peers.sharp_key(attack.SHARP_TEMPERATURE, peers.SHARP_OPTIONS["warm_start"])
    assert len(means) >= 3 and min(means, key=means.get) == chosen


@pytest.mark.parametrize("rule", ["ostrich", "runner-up"])
def test_committed_imagenet_comparison_is_complete_and_current(rule):
    from lib import attack, fast_attack, imagenet, natural_images

    run = peers.load(peers.IMAGENET_NETWORK, peers.IMAGENET_DIR, rule)
    assert run.provenance["weights"] == imagenet.info(peers.IMAGENET_NETWORK).sha256
    assert run.provenance["photos"] == natural_images.load_attacks(peers.IMAGENET_NETWORK, rule).photos
    assert run.provenance["threads"] == 1
    done = {(r.method, r.budget) for r in run.results}
    assert done == {(m, b) for m, budgets in peers.IMAGENET_BUDGETS.items() for b in budgets}
    for r in run.results:
        assert np.isfinite(r.gradients) and r.gradients > 0, r.label
        if r.method == "DDN":
            assert r.gradients == r.budget  # one gradient per step and image: the count is right
    own = [r for r in run.results if r.method in (peers.OURS, peers.SHARP)]
    assert all(r.trace and r.trace[-1][0] <= r.gradients for r in own)
    assert (run.provenance["attack_version"], run.provenance["fast_attack_version"]) == (
        attack.VERSION, fast_attack.VERSION), "the attack changed: rerun benchmarks/bench_imagenet_peers.py"
    assert run.provenance["walk_versions"] == peers.walk_versions(), "a walk changed: rerun bench_imagenet_peers.py"
    assert run.provenance["walk_batches"] == peers.IMAGENET_WALK_BATCHES  # no walk's end depends on the batch


def test_improving_runs_count_the_runs_that_bring_a_closer_success():
    found = result(OURS, 4, [0.01, 0.02], model="efficientnet-lite0")
    found.trace = [(100.0, [math.inf, 0.03]), (200.0, [0.02, 0.03]), (300.0, [0.015, 0.03]), (400.0, [0.015, 0.025]),
                   (450.0, [0.01, 0.02])]  # the last point: the refinement, not a run
    assert peers.improving_runs(found).tolist() == [2, 2]


def test_polish_start_table_ratios_to_the_best_row_per_photo():
    sharp = {"photos": ["a", "b"], "results": {peers.sharp_key(0.01, False): {
        "ostrich": {"distortion": [0.004, 0.003], "gradients": 1000.0}}}}
    record = {"photos": ["a", "b"], "results": {
        "DDN-100": {"distortion": [0.003, 0.004], "gradients": 100.0},
        "DDN-100 + polish-100": {"distortion": [0.002, 0.0022], "gradients": 210.0},
        "DDN-100 + BB-100": {"distortion": [0.0021, 0.002], "gradients": 200.0}}}
    table = peers.polish_start_table(record, sharp).set_index("start, then")
    assert table.loc["DDN-100 + polish-100", "median ratio to the best row"] == pytest.approx((1 + 1.1) / 2, abs=1e-3)
    assert table.loc["DDN-100 + BB-100", "median ratio to the best row"] == pytest.approx((1.05 + 1) / 2, abs=1e-3)
    assert table.loc[f"{peers.SHARP} (its own c search)", "gradients / image"] == 1000
    with pytest.raises(ValueError, match="other photos"):
        peers.polish_start_table({**record, "photos": ["a", "c"]}, sharp)


def test_polish_stop_reads_the_tolerance_and_basin_rows():
    sharp = {"photos": ["a"], "results": {peers.sharp_key(0.01, False): {
        "ostrich": {"distortion": [0.004], "gradients": 1000.0}}}}

    def stop(untolerant: float, walked_polished: float, longest: float = 0.00203) -> peers.PolishStop:
        record = {"photos": ["a"], "results": {
            "DDN-100": {"distortion": [0.003], "gradients": 100.0},
            "DDN-100 + polish-100": {"distortion": [0.00204], "gradients": 210.0},
            "DDN-100 + polish-300": {"distortion": [longest], "gradients": 300.0},
            "DDN-100 + BB-100": {"distortion": [0.00201], "gradients": 200.0},
            "DDN-100 + polish-300, no stopping tolerances": {"distortion": [untolerant], "gradients": 400.0},
            "DDN-100 + polish-300, no stopping tolerances, float64": {"distortion": [0.00204], "gradients": 400.0},
            "DDN-100 + BB-100 + polish-100": {"distortion": [walked_polished], "gradients": 300.0}}}
        return peers.polish_stop(peers.polish_start_table(record, sharp))

    basin = stop(untolerant=0.00204, walked_polished=0.002)
    assert basin.polished == pytest.approx(1.02) and basin.longest == pytest.approx(1.015)
    assert basin.walked == pytest.approx(1.005) and basin.walked_polished == pytest.approx(1.0)
    assert not basin.stopping_rule_matters and not basin.precision_matters
    assert basin.another_basin and basin.start_holds_it
    rule = stop(untolerant=0.0019, walked_polished=0.00202)  # running on comes closer; BB's end does not help
    assert rule.stopping_rule_matters and not rule.another_basin and not rule.start_holds_it
    both = stop(untolerant=0.00203, walked_polished=0.002, longest=0.00206)  # running on closes 60% of the gap
    assert both.stopping_rule_matters and both.start_holds_it and both.another_basin
    assert both.gap_closed_by_running_on == pytest.approx(0.6)


def test_polish_stop_compares_photo_by_photo():
    sharp = {"photos": ["a", "b", "c"], "results": {peers.sharp_key(0.01, False): {
        "ostrich": {"distortion": [0.004] * 3, "gradients": 1000.0}}}}
    rows = {"DDN-100": [1.2] * 3, "DDN-100 + polish-100": [1.03, 1.02, 1.03],
            "DDN-100 + polish-300": [1.03, 1.01, 1.02],  # median ratio 1.02
            "DDN-100 + BB-100": [1.0, 1.0, 1.0],
            "DDN-100 + polish-300, no stopping tolerances": [1.0, 1.01, 1.02],  # median 1.01, yet closer on one photo only
            "DDN-100 + polish-300, no stopping tolerances, float64": [1.0, 1.01, 1.02],
            "DDN-100 + BB-100 + polish-100": [0.99] * 3}
    record = {"photos": ["a", "b", "c"], "results": {k: {"distortion": v, "gradients": 100.0} for k, v in rows.items()}}
    stop = peers.polish_stop(peers.polish_start_table(record, sharp))
    assert stop.untolerant < stop.longest * (1 - peers.SPEED_TOLERANCE)  # the medians alone would say it matters
    assert stop.running_on == pytest.approx(1.0) and not stop.stopping_rule_matters
    assert stop.gap_closed_by_running_on == pytest.approx(0.0) and stop.held == pytest.approx(1.01)


def test_segment_margins_against_the_linear_margin_by_hand():
    weight = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(2, 2, bias=False))
    model[1].weight.data = weight
    a, b = torch.tensor([[[[0.9, 0.1]]]]), torch.tensor([[[[0.1, 0.9]]]])  # label 0 at a, label 1 at b
    margins = peers.segment_margins(model, a, b, torch.tensor([1]), points=(0.25, 0.5, 0.75))
    assert margins == pytest.approx(np.array([[-0.4, 0.0, 0.4]]), abs=1e-6)  # z_1 - z_0 = 1.6 s - 0.8
    with pytest.raises(ValueError, match="points"):
        peers.segment_margins(model, a, b, torch.tensor([1]), points=(0.0, 0.5))


def test_pockets_reads_the_basins_entry():
    record = {"basins": {"between": ["p", "w"], "points": [0.5, 0.9],
                         "margins": [[-1.0, 0.2], [0.3, 0.1], [-0.2, -0.5]], "separation": [0.3, 0.4, 0.6],
                         "alignment": {"p": [0.9, 0.95, 0.93], "w": [0.7, 0.96, 0.94]},
                         "travel": {"p": [0.1, 0.2, 0.5], "w": [0.3, 0.4, 0.4]}}}
    found = peers.pockets(record)
    assert found.travel_polished == pytest.approx(0.2) and found.travel_walked == pytest.approx(0.4)
    assert found.walked_farther == 2 and not found.walks_away
    record["basins"]["travel"]["w"][2] = 0.6
    assert peers.pockets(record).walks_away
    assert found.left == 2 and found.photos == 3 and not found.separate
    assert found.lowest_margin == pytest.approx(-0.5) and found.separation == pytest.approx(0.4)
    assert found.alignment_polished == pytest.approx(0.93) and found.alignment_walked == pytest.approx(0.94)
    assert found.equally_stationary
    record["basins"]["alignment"]["w"] = [0.99, 0.99, 0.99]
    assert not peers.pockets(record).equally_stationary
    record["basins"]["margins"][1] = [0.3, -0.1]
    assert peers.pockets(record).separate
    with pytest.raises(KeyError, match="basins"):
        peers.pockets({})
    del record["basins"]["travel"]
    with pytest.raises(KeyError, match="travel"):
        peers.pockets(record)


def test_walk_runs_needed_is_the_first_run_within_the_tolerance_of_the_end():
    assert peers.walk_runs_needed([np.inf, 1.3, 1.1, 1.004, 1.002, 1.0]) == 4
    assert peers.walk_runs_needed([1.0, 1.0]) == 1
    assert peers.walk_runs_needed([2.0, 1.5, 1.0], tolerance=0.0) == 3
    with pytest.raises(ValueError, match="medians"):
        peers.walk_runs_needed([])
    with pytest.raises(ValueError, match="medians"):
        peers.walk_runs_needed([1.0, np.inf])
    start = {"photos": ["a", "b", "c"], "results": {peers.WALKED: {"distortion": [1.0, 2.0, 4.0], "gradients": 200.0}}}
    record = {"photos": ["a", "b", "c"], "results": {peers.LONG_WALK: {"trace": [
        {"distortion": [None, 4.0, 8.0], "gradients": 30.0}, {"distortion": [1.0, 2.2, 4.4], "gradients": 60.0}]}}}
    assert peers.long_walk_medians(record, start) == pytest.approx([2.0, 1.1])
    with pytest.raises(KeyError, match="bench_polish_walk"):
        peers.long_walk_medians({"results": {}}, start)


def test_walk_table_and_verdict_read_made_up_records():
    start = {"photos": ["a", "b"], "results": {peers.WALKED: {"distortion": [1.0, 2.0], "gradients": 200.0}}}
    trace = lambda d, g: [{"distortion": [None, None], "gradients": g / 2}, {"distortion": d, "gradients": g}]
    record = {"photos": ["a", "b"], "results": {
        "DDN-100 + walk": {"distortion": [0.99, 2.0], "trace": trace([0.99, 2.0], 300.0)},
        "DDN-100 + walk, step 0": {"distortion": [1.02, 2.06], "trace": trace([1.02, 2.06], 300.0)},
        "linearised + walk": {"distortion": [1.0, 2.2], "trace": trace([1.0, 2.2], 500.0)},
        "linearised + walk, step 0": {"distortion": [1.2, 2.4], "trace": trace([1.2, 2.4], 500.0)},
        peers.PROBABILITY_WALK: {"distortion": [1.003, 1.9], "trace": trace([1.003, 1.9], 500.0)},
        peers.BOTH_WALK: {"distortion": [1.0, 1.9], "trace": trace([1.0, 1.9], 1000.0)}}}
    from lib.fast_attack import GRADIENT_LENGTH, GRADIENT_LENGTHS
    gradient = {length: [1.0 - k / 100, 2.0 - k / 25] for k, length in enumerate(GRADIENT_LENGTHS)}  # 1 - 0.015 k
    for length, d in gradient.items():
        record["results"][peers.gradient_walk_label(length)] = {"distortion": d, "trace": trace(d, 600.0)}
    in_use = GRADIENT_LENGTHS.index(GRADIENT_LENGTH)  # the rounding checks run at the length in use
    chosen = gradient[GRADIENT_LENGTH]  # ratios 1 - in_use / 100, 1 - in_use / 50
    for shift, d in zip(peers.REORDER_SHIFTS, ([chosen[0] * 1.02, chosen[1]], chosen)):
        record["results"][peers.reordered_walk_label(shift)] = {"distortion": d, "trace": trace(d, 600.0)}
    single = [chosen[0], chosen[1] * 0.95]
    record["results"][peers.SINGLE_WALK] = {"distortion": single, "trace": trace(single, 600.0)}
    table = peers.walk_table(record, start)
    ratio = table.set_index("start, then")["median ratio to Brendel-Bethge"]
    assert ratio[peers.WALKED] == 1.0 and ratio["DDN-100 + walk"] == pytest.approx(0.995)
    assert table.set_index("start, then").loc["linearised + walk", "gradients / image"] == 500.0
    assert table.set_index("start, then").loc["linearised + walk", "b"] == pytest.approx(1.1)
    verdict = peers.walk_verdict(table)
    assert verdict.reaches_walker and not verdict.own_reaches_walker and verdict.push_matters
    assert verdict.from_own == pytest.approx(1.05) and verdict.own_photos_far == 1
    assert verdict.from_probability == pytest.approx((1.003 + 0.95) / 2) and verdict.from_both == pytest.approx(0.975)
    assert verdict.both_reaches_walker and verdict.starts_differ == 1  # a: 0.3% apart, b: 1.1 against 0.95
    assert verdict.batch_spread == pytest.approx(0.0)  # the made-up "both" row is the closer of the two on each photo
    assert verdict.from_gradient[GRADIENT_LENGTHS[1]] == pytest.approx(0.985)
    assert verdict.chosen_length == GRADIENT_LENGTHS[-1] and verdict.gradient_reaches_walker
    assert verdict.reorder_spread == pytest.approx(0.02) and verdict.chosen_mean == pytest.approx(1 - 0.015 * in_use)
    assert verdict.single_spread == pytest.approx(0.05)
    assert verdict.closest_length == pytest.approx((0.955, 0.955))
    record["results"][peers.gradient_walk_label(GRADIENT_LENGTHS[0])]["distortion"] = [0.9, 1.8]
    assert peers.walk_verdict(peers.walk_table(record, start)).chosen_length == GRADIENT_LENGTHS[0]
    del record["results"][peers.gradient_walk_label(GRADIENT_LENGTHS[0])]
    with pytest.raises(KeyError, match="bench_polish_walk"):
        peers.walk_verdict(peers.walk_table(record, start))
    record["results"][peers.gradient_walk_label(GRADIENT_LENGTHS[0])] = {"distortion": [1.0, 2.0], "trace": trace([1.0, 2.0], 600.0)}
    record["results"]["linearised + walk, step 0"]["distortion"] = [1.0, 2.2]
    assert not peers.walk_verdict(peers.walk_table(record, start)).push_matters
    with pytest.raises(ValueError, match="photos"):
        peers.walk_table(record, {**start, "photos": ["c", "d"]})
    with pytest.raises(KeyError, match="bench_polish_start"):
        peers.walk_table(record, {"photos": ["a", "b"], "results": {}})
    import matplotlib
    matplotlib.use("Agg")
    assert peers.walk_plot(record, start).axes


def test_walk_on_mnist_compares_both_walks_with_ours_model_by_model():
    def model_results(model: str, walk: float, walk_ddn: float) -> list[PeerResult]:
        base = np.array([0.03, 0.04, 0.05])
        found = [result(OURS, 10, base, model=model), result(peers.WALK, 21, base * walk, model=model),
                 result(peers.WALK_DDN, 21, base * walk_ddn, model=model), result("DDN", 100, base * 1.01, model=model)]
        for r, gradients in zip(found, (100.0, 300.0, 400.0, 100.0)):
            r.gradients = gradients
        return found

    results = model_results("a", 0.99, 0.995) + model_results("b", 1.002, 1.01) + model_results("c", 1.0, 0.98)
    results += [result(OURS, 10, [0.03], model="d")]  # no walk there: left out
    table = peers.walk_mnist_table(results)
    assert table["model"].tolist() == ["a", "b", "c"]
    assert table[f"{OURS}: ratio to best peer"].tolist() == pytest.approx([1 / 1.01] * 3)
    walk = peers.WalkOnMnist(table)
    assert walk.farther == ["b"]  # DDN+walk 1% farther than ours there
    assert walk.closer == ["a"]  # c: ours-walk ties ours
    assert walk.gradient_factor(peers.WALK) == (3.0, 3.0) and walk.gradient_factor(peers.WALK_DDN) == (4.0, 4.0)


def test_stale_walks_are_dropped_and_the_rest_kept():
    from lib import polish_walk

    results = [result(OURS, 10, [0.03]), result(peers.WALK, 21, [0.03]), result(peers.WALK_DDN, 21, [0.03]),
               result("DDN", 100, [0.031])]
    run = peers.PeerRun("softmax-1e-4", np.arange(1), np.zeros(1), np.ones(1), list(results), {"walk_version": 0})
    assert peers.drop_stale_walks(run)
    assert [r.method for r in run.results] == [OURS, "DDN"] and run.provenance["walk_versions"] == peers.walk_versions()
    assert "walk_version" not in run.provenance
    current = peers.PeerRun("softmax-1e-4", np.arange(1), np.zeros(1), np.ones(1), list(results),
                            {"walk_versions": peers.walk_versions()})
    assert not peers.drop_stale_walks(current) and len(current.results) == 4
    # a run from before ours-walk's start was versioned: its DDN+walk still holds, its ours-walk only if start 1 is today's
    legacy = peers.PeerRun("softmax-1e-4", np.arange(1), np.zeros(1), np.ones(1), list(results),
                           {"walk_version": polish_walk.VERSION})
    assert peers.drop_stale_walks(legacy) == (polish_walk.OWN_START_VERSION != 1)
    kept = {r.method for r in legacy.results}
    assert peers.WALK_DDN in kept and (peers.WALK in kept) == (polish_walk.OWN_START_VERSION == 1)


def test_walk_validation_reads_made_up_crops():
    from lib.fast_attack import GRADIENT_LENGTH, GRADIENT_LENGTHS
    crops = ["a", "a (mirror)", "b"]
    record = {"photos": crops, "results": {peers.WALKED: {"distortion": [1.0, 2.0, 4.0], "gradients": 200.0}}}
    with pytest.raises(KeyError, match="chosen length"):
        peers.walk_validation(record)
    long = [[None, 2.0, 1.2, 1.1, 1.0, 1.0, 1.0, 1.0]] * 3  # per crop, ratios to the reference after each run
    factor = lambda length: 1.0 if length == GRADIENT_LENGTH else 0.9 + GRADIENT_LENGTHS.index(length) / 20  # noqa: E731
    for length in GRADIENT_LENGTHS:
        runs = 8 if length == GRADIENT_LENGTH else 4
        images = {c: {"distortion": [None if v is None else v * ref * factor(length)
                                     for v in long[j][:runs]], "gradients": [30 * (k + 1) for k in range(runs)]}
                  for j, (c, ref) in enumerate(zip(crops, (1.0, 2.0, 4.0)))}
        record["results"][peers.gradient_walk_label(length)] = {"length": length, "runs": runs, "images": images}
    record["results"]["half done"] = {"length": 9.0, "images": {"a": {"distortion": [1.0], "gradients": [1]}}}
    v = peers.walk_validation(record)
    assert v.crops == crops and set(v.ratios) == set(GRADIENT_LENGTHS)  # the walk on one crop only is left out
    assert v.medians(GRADIENT_LENGTH) == pytest.approx([np.inf, 2.0, 1.2, 1.1, 1.0, 1.0, 1.0, 1.0])
    assert v.runs_needed == 5 and v.compared_runs == 4
    others = [length for length in GRADIENT_LENGTHS if length != GRADIENT_LENGTH]
    assert v.at_runs(4)[others[0]] == pytest.approx(1.1 * factor(others[0])) and v.closest_length == others[0]
    assert v.closer_crops(others[0], GRADIENT_LENGTH) == 3 and v.closer_crops(GRADIENT_LENGTH, others[0]) == 0
    assert not v.length_settled  # another length ends closer on every crop and by 10% in the median
    assert v.means(4)[GRADIENT_LENGTH] == pytest.approx(1.1)
    for length in others:  # closer by 0.2% in the median only: not a reason to change
        v.ratios[length] = v.ratios[GRADIENT_LENGTH][:4] * np.array([0.998, 0.998, 1.2])
    assert v.length_settled
    v = peers.walk_validation(record)
    assert v.multi_runs == min(4, 8 // len(GRADIENT_LENGTHS))
    k = v.multi_runs
    assert v.multi_start(k) == pytest.approx(long[0][k - 1] * factor(others[0]) * np.ones(3) if k > 1 else [np.inf] * 3)
    multi, spent, single, single_spent = v.equal_cost
    assert spent == 30 * k * len(GRADIENT_LENGTHS) and single_spent >= min(spent, 240)
    assert single == pytest.approx(v.medians(GRADIENT_LENGTH)[int(single_spent) // 30 - 1])
    assert v.peer_ratios == {} and v.draws(2) == pytest.approx([1.0, 1.0, 1.0])  # Brendel-Bethge the only peer
    fmn = f"{peers.VALIDATION_PEERS[0][0]}-{peers.VALIDATION_PEERS[0][1]}"
    record["results"][fmn] = {"distortion": [0.5, None, 4.4], "gradients": 300.0}  # closer on a, failed on b
    v = peers.walk_validation(record)
    assert v.peer_ratios[fmn] == pytest.approx([0.5, np.inf, 1.1])
    assert v.to_best_peer(GRADIENT_LENGTH)[-1] == pytest.approx([2.0, 1.0, 1.0])
    assert sorted(v.draws(2)) == pytest.approx([1.0, 1.5, 1.5]) and v.draws(3) == pytest.approx([1.0])
    assert v.share_met(2) == pytest.approx(1 / 3) and v.share_met(3) == 1.0
    with pytest.raises(ValueError, match="between 1 and the 3 crops"):
        v.draws(4)
    with pytest.raises(KeyError, match="bench_walk_validation"):
        peers.walk_validation({"photos": crops, "results": {}})
    short = json.loads(json.dumps(record))
    for entry in short["results"][peers.gradient_walk_label(GRADIENT_LENGTH)]["images"].values():
        del entry["distortion"][3:], entry["gradients"][3:]  # 3 runs, fewer than the other lengths' 4
    with pytest.raises(ValueError, match="must be the longest"):
        peers.walk_validation(short)
    import matplotlib
    matplotlib.use("Agg")
    assert peers.walk_validation_plot(v).axes


def test_ostrich_miss_tells_a_bad_draw_from_a_closer_peer_and_from_the_walk():
    from lib.fast_attack import GRADIENT_LENGTH

    def crops(end) -> peers.WalkValidation:
        ratios = np.array([[2.0] * len(end), end])  # two runs; the walk's end on each crop / Brendel-Bethge's
        return peers.WalkValidation([f"c{j}" for j in range(len(end))], {GRADIENT_LENGTH: ratios},
                                    {GRADIENT_LENGTH: np.ones_like(ratios)}, {"FMN*-300": np.array([1.1, 0.9, 1.2, 1.3])})

    even = crops([1.0, 1.0, 1.0, 1.0])  # against the best peer: 1, 1/0.9, 1, 1
    walk = peers.ostrich_miss(even, walks_run("ostrich", [1.04, 1.02], [1.0, 1.0]))
    assert sorted(walk.draws) == pytest.approx([1.0, 1.0, 1.0, 1.0 + 1 / 18, 1.0 + 1 / 18, 1.0 + 1 / 18])
    assert walk.share_met == pytest.approx(0.5) and walk.crops_peer_closer == 1
    assert walk.test_median == pytest.approx(1.03) and walk.test_median_bb == pytest.approx(1.03)
    assert walk.test_ratios_bb == pytest.approx([1.04, 1.02]) and walk.test_ratios == pytest.approx([1.04, 1.02])
    assert walk.peer_gain == pytest.approx([1.0, 1.0])  # Brendel-Bethge is as close as the best peer
    assert walk.beyond_draws is False and walk.cause == "draw"  # 1.03 is below the draws' largest, 1.056
    walk = peers.ostrich_miss(crops([1.0, 0.9, 1.0, 1.0]), walks_run("ostrich", [1.04, 1.02], [1.0, 1.0]))
    assert walk.draws.max() == pytest.approx(1.0) and walk.cause == "walk"  # beyond them, and beyond BB too
    assert walk.closest_peer == {"DDN-1000": 2, "BB-21": 2}
    peer = peers.ostrich_miss(crops([1.0, 0.9, 1.0, 1.0]), walks_run("ostrich", [1.02, 1.02], [1.0, 1.0], bb=(1.02, 1.02)))
    assert peer.test_median == pytest.approx(1.02) and peer.test_median_bb == pytest.approx(1.0) and peer.cause == "peer"
    assert peer.peer_gain == pytest.approx([1 / 1.02, 1 / 1.02]) and peer.gap_photo is None  # both photos: not one
    assert peer.best_labels == ["DDN-1000", "DDN-1000"] and peer.gain_peer == "DDN-1000"
    assert peer.crops_peers == ["FMN*-300"] and not peer.gain_peer_on_crops  # DDN did not run on the crops
    assert walk.gap_photo is None  # no peer gains on Brendel-Bethge
    one = peers.OstrichMiss(np.ones(3), np.array([1.3, 1.0, 1.1]), np.array([1.0, 1.0, 1.1]), {}, 0)
    assert one.gap_photo == 0 and one.test_median == pytest.approx(1.1)  # judged against BB, photo 0 gives 1.0
    assert one.largest_gain == 0
    assert peer.closest_peer == {"DDN-1000": 2}  # Brendel-Bethge is the closest on no photo: left out
    with pytest.raises(ValueError, match="ostrich comparison"):
        peers.ostrich_miss(even, walks_run("runner-up", [1.0, 1.0], [1.0, 1.0]))


def test_committed_walk_validation_is_current_and_chooses_ours_walks_settings():
    from lib import attack, fast_attack, imagenet, natural_images, photos
    record = json.loads((peers.IMAGENET_DIR / "walk_validation.json").read_text())
    names = natural_images.validation_photos(peers.IMAGENET_NETWORK)
    assert record["photos"] == photos.load_variants(names)[1] and record["walk_versions"] == peers.walk_versions()
    assert record["attack_version"] == attack.VERSION and record["weights"] == imagenet.info(peers.IMAGENET_NETWORK).sha256
    v = peers.walk_validation(record)
    assert set(v.ratios) == set(fast_attack.GRADIENT_LENGTHS) and np.isfinite(v.ratios[fast_attack.GRADIENT_LENGTH][-1]).all()
    assert len(v.ratios[fast_attack.GRADIENT_LENGTH]) == peers.LONG_WALK_RUNS and v.compared_runs == peers.SHORT_RUNS
    assert peers.IMAGENET_BUDGETS[peers.WALK] == (v.runs_needed,) and v.length_settled
    walk_record = json.loads((peers.IMAGENET_DIR / "polish_walk.json").read_text())
    assert peers.repeats_single_walk(record, walk_record)
    assert set(v.peer_ratios) == {f"{m}-{b}" for m, b in peers.VALIDATION_PEERS}  # the peers ran on every crop
    assert all(np.isfinite(r).all() for r in v.peer_ratios.values())
    miss = peers.ostrich_miss(v, peers.load(peers.IMAGENET_NETWORK, peers.IMAGENET_DIR, "ostrich"))
    assert len(miss.draws) == math.comb(len(v.crops), 4) and miss.cause in ("draw", "peer", "walk")
    assert len(miss.best_labels) == 4 and all(miss.closest_peer[label] > 0 for label in miss.best_labels)
