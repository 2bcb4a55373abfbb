"""lib.natural_images: the committed ImageNet examples checked by forward passes, a re-attack, and the verdicts."""
import copy
import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from lib import attack, imagenet, natural_images, photos, quantise


@pytest.fixture(scope="module")
def runs():
    return natural_images.load_all()


@pytest.fixture(scope="module")
def evaluation():
    return natural_images.load_evaluation()


def test_every_network_and_rule_is_committed_for_the_used_photos_under_todays_versions(runs):
    used = natural_images.used_photos(natural_images.top1_table())
    assert {(r.network, r.rule) for r in runs} == {(n, rule) for n in imagenet.LITE_NAMES
                                                   for rule in natural_images.RULES}
    for run in runs:
        assert natural_images.attacks_are_current(run.network, run.rule, used)
        assert run.meta["grid_version"] == quantise.VERSION
        assert run.meta["weights"] == dataclasses.asdict(imagenet.info(run.network))
        assert run.meta["gradient_evaluations"] > 0 and run.meta["seconds"] > 0


def test_the_committed_inputs_are_the_photos(runs):
    x, _ = photos.load(runs[0].photos)
    for run in runs:
        assert run.x.dtype == np.uint8 and np.array_equal(run.x, np.round(x.numpy() * 255).astype(np.uint8))


def test_forward_passes_give_the_committed_labels_and_every_example_its_target(runs):
    for run in runs:
        model = imagenet.load(run.network)
        x, x_adv, x_8bit = run.float_inputs()
        with torch.no_grad():
            assert np.array_equal(model(x).argmax(1).numpy(), run.label)
            assert np.array_equal(model(x_adv).argmax(1).numpy(), run.label_adv)
            assert np.array_equal(model(x_8bit).argmax(1).numpy(), run.label_adv_8bit)
        assert run.success.all() and run.success_8bit.all(), (run.network, run.rule)
        if run.rule == "ostrich":
            assert (run.target == imagenet.OSTRICH).all()
        else:
            assert (run.target != run.label).all()
        assert np.allclose(attack.distortion(x, x_adv).numpy(), run.distortion, rtol=1e-5)
        assert np.allclose(attack.distortion(x, x_8bit).numpy(), run.distortion_8bit, rtol=1e-5)
        assert 0 <= x_adv.min() and x_adv.max() <= 1


def test_an_8bit_example_saved_as_png_and_reloaded_is_still_the_target(runs, tmp_path):
    run = next(r for r in runs if r.network == "efficientnet-lite0" and r.rule == "ostrich")
    model = imagenet.load(run.network)
    for i, name in enumerate(run.photos):
        path = tmp_path / f"{name}.png"
        Image.fromarray(run.x_adv_8bit[i].transpose(1, 2, 0)).save(path)
        reloaded = torch.from_numpy(np.asarray(Image.open(path)).copy()).permute(2, 0, 1).float() / 255
        assert np.array_equal(np.asarray(Image.open(path)).transpose(2, 0, 1), run.x_adv_8bit[i])
        with torch.no_grad():
            assert model(reloaded[None]).argmax(1).item() == imagenet.OSTRICH


def test_reattacking_one_photo_reproduces_the_committed_example(runs):
    """The runner-up attack on one photo for lite0, alone in its batch: the same success and distortion."""
    run = next(r for r in runs if r.network == "efficientnet-lite0" and r.rule == "runner-up")
    i = int(np.argmin(run.distortion))  # the quickest to redo
    model = imagenet.load(run.network)
    x, _, _ = run.float_inputs()
    again = attack.lbfgs_attack(model, x[i:i + 1], torch.from_numpy(run.target[i:i + 1]))
    assert again.success.item()
    assert again.distortion.item() == pytest.approx(run.distortion[i], rel=1e-3)  # batch of 1, not 4: float rounding
    assert torch.allclose(again.x_adv[0], torch.from_numpy(run.x_adv[i]), atol=1e-3)


def test_the_evaluation_covers_every_example_and_png_equals_rounding(runs, evaluation):
    assert (evaluation["version"], evaluation["attack_version"], evaluation["grid_version"]) == (
        natural_images.VERSION, attack.VERSION, quantise.VERSION)
    assert evaluation["weights"] == {n: imagenet.info(n).sha256 for n in evaluation["networks"]}
    n_examples = sum(len(r.photos) for r in runs)
    assert len(evaluation["survival"]) == n_examples * 2 * len(natural_images.STORAGE)
    kept = natural_images.survival_table(evaluation)
    assert kept.loc["8-bit", "PNG"] == 1.0 and kept.loc["8-bit", "rounded to 8 bits"] == 1.0
    assert (kept["PNG"] == kept["rounded to 8 bits"]).all()  # PNG is lossless
    assert kept.loc["8-bit", "float"] == 1.0 and kept.loc["float", "float"] == 1.0
    rows = evaluation["transfer"]
    assert len(rows) == n_examples * len(evaluation["networks"]) * len(natural_images.MAGNIFICATIONS) * 2
    own = [r for r in rows if r["source"] == r["network"] and r["perturbation"] == "adversarial"
           and r["magnification"] == 1.0]
    assert all(r["changed"] == 1.0 and r["target_hit"] == 1.0 for r in own)  # each example fools its own network
    by_key = {(r.network, r.rule): r for r in runs}
    for r in own:  # misclassified by its own network exactly where its target is a wrong class for the photo
        run = by_key[r["source"], r["rule"]]
        target = int(run.target[run.photos.index(r["photo"])])
        assert r["misclassified"] == float(target not in photos.photo(r["photo"]).correct)


def test_findings_flip_with_their_inputs(runs, evaluation):
    found = natural_images.findings(runs, evaluation)
    assert all(f.holds is not None for f in found)
    failed = [dataclasses.replace(r, label_adv=r.label.copy()) if i == 0 else r for i, r in enumerate(runs)]
    assert natural_images.findings(failed, evaluation)[0].holds is False
    big = [dataclasses.replace(r, distortion=r.distortion * 1000) for r in runs]
    assert natural_images.findings(big, evaluation)[1].holds is False
    assert natural_images.findings(big, evaluation)[2].holds is False
    strong = copy.deepcopy(evaluation)
    for row in strong["transfer"]:
        row["misclassified"] = float(row["perturbation"] == "adversarial")
    assert natural_images.findings(runs, strong)[3].holds is True
    assert natural_images.findings(runs, evaluation)[3].holds is False
    lost = copy.deepcopy(evaluation)
    for row in lost["survival"]:
        if row["example"] == "8-bit" and row["storage"] == "PNG":
            row["target_kept"] = False
            break
    assert natural_images.findings(runs, lost)[4].holds is False


def _evaluation(adversarial: float, noise: float, pairs: int = 20) -> dict:
    rows = []
    for k in range(pairs):
        base = dict(source="a", rule="ostrich", photo=f"p{k}", network="b", magnification=1.0, clean_is_target=False,
                    target_hit=0.0)
        rows += [dict(base, perturbation="adversarial", misclassified=adversarial, changed=adversarial),
                 dict(base, perturbation="noise", misclassified=noise, changed=noise)]
    return dict(transfer=rows, noise_seeds=5, magnifications=[1.0])


def test_the_sign_test_tells_adversarial_transfer_from_noise():
    (strong,) = natural_images.transfer_tests(_evaluation(1.0, 0.2))
    assert strong.holds and strong.for_examples == 20 and strong.against == 0 and strong.p_value < 1e-5
    assert strong.noise_wrong == 20 and strong.noise_draws == 100 and strong.adversarial_wrong == 20
    (weak,) = natural_images.transfer_tests(_evaluation(0.0, 0.4))
    assert not weak.holds and weak.against == 20 and weak.p_value == 1.0
    (tied,) = natural_images.transfer_tests(_evaluation(0.0, 0.0))
    assert not tied.holds and tied.for_examples == tied.against == 0


def test_runner_up_targets_that_are_right_answers_are_not_misclassifications(runs):
    table = natural_images.attack_table(runs)
    wrong = table["misclassified"]
    ostrich = table["rule"] == "ostrich"
    assert wrong[ostrich].all()  # no photo's accepted classes include the ostrich
    cats = (table["photo"] == "chelsea") & (table["rule"] == "runner-up")
    assert not wrong[cats].any()  # a chelsea runner-up is another cat class
    ratios = natural_images.grid_ratios(table)
    assert (ratios["mean"] >= 1).all() and (ratios["max"] >= ratios["mean"]).all()


def test_counting_model_counts_gradient_and_plain_passes_and_keeps_eval_mode():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3)).eval()
    counted = natural_images.CountingModel(model)
    x = torch.rand(4, 3, 2, 2)
    with torch.no_grad():
        counted(x)
    counted(x.requires_grad_(True)).sum().backward()
    assert (counted.forward_evaluations, counted.gradient_evaluations) == (4, 4)
    with attack._evaluating(counted):
        pass
    assert not model.training


def test_missing_results_name_the_command(tmp_path, monkeypatch):
    monkeypatch.setattr(natural_images, "RESULTS_DIR", tmp_path)
    with pytest.raises(FileNotFoundError, match="python -m lib imagenet"):
        natural_images.load_attacks("efficientnet-lite0", "ostrich")
    with pytest.raises(FileNotFoundError, match="python -m lib imagenet"):
        natural_images.load_evaluation()
    with pytest.raises(ValueError, match="rule"):
        natural_images.load_attacks("efficientnet-lite0", "tabby")


def test_validation_photos_are_the_bundled_ones_the_committed_attacks_do_not_use():
    used = natural_images.load_attacks("efficientnet-lite0", natural_images.RULES[0]).photos
    validation = natural_images.validation_photos("efficientnet-lite0")
    assert validation and set(validation).isdisjoint(used)
    assert sorted(validation + list(used)) == sorted(photos.NAMES)
