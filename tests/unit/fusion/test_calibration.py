"""Per-path / per-title temperatures and their held-out check (pure functions), and the augmentation that
keeps the background-attention weak label when the backbone trains from pixels."""

import numpy as np
import torch

from classifier.fusion.augmentation import augment, augment_with_foreground
from classifier.fusion.evaluation import ece
from classifier.fusion.training import (
    CalibrationScores,
    PathTemperatures,
    choose_threshold,
    cross_validated_ece,
    fit_path_temperatures,
    fit_temperature,
    served,
    wilson_lower_bound,
)


def synthetic(n: int = 3000, k: int = 6, light_scale: float = 3.0, untyped_scale: float = 1.0, seed: int = 0):
    """Labels drawn from softmax(z): logits z are calibrated; the light path's are ``light_scale`` x z
    (overconfident), the untyped titles' full-path logits ``untyped_scale`` x z."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, k, generator=g) * 2.5
    y = torch.multinomial(torch.softmax(z, -1), 1, generator=g)[:, 0]
    typed = torch.rand(n, generator=g) < 0.5
    full = torch.where(typed.unsqueeze(-1), z, z * untyped_scale)
    eligible = torch.rand(n, generator=g) < 0.6
    return CalibrationScores(full=full, light=z * light_scale, labels=y, typed=typed, eligible=eligible)


def test_served_takes_the_light_path_only_for_eligible_items_at_the_threshold():
    full = torch.tensor([[0.0, 3.0], [0.0, 3.0], [0.0, 3.0]])
    light = torch.tensor([[5.0, 0.0], [5.0, 0.0], [0.5, 0.0]])  # p(top) 0.993, 0.993, 0.62
    s = CalibrationScores(
        full,
        light,
        torch.tensor([0, 1, 0]),
        torch.tensor([True, False, True]),
        torch.tensor([True, False, True]),
    )
    conf, correct, on_light = served(s, PathTemperatures(1.0, 3.0, 1.0), threshold=0.9)
    assert on_light.tolist() == [True, False, False]
    assert correct.tolist() == [True, True, False]
    assert conf[0] == torch.softmax(light[0], -1).max().item()
    # item 1 names no type: its full-path logits are divided by the untyped temperature
    assert np.isclose(conf[1], torch.softmax(full[1] / 3.0, -1).max().item())
    assert np.isclose(conf[2], torch.softmax(full[2], -1).max().item())
    # a light temperature that softens the light path sends item 0 to the full path
    _, _, on_light = served(s, PathTemperatures(1.0, 3.0, 3.0), threshold=0.9)
    assert not on_light.any()


def test_single_temperature_is_the_full_path_fit_over_every_item():
    s = synthetic()
    t = fit_path_temperatures(s, 0.9, per_path=False, per_title=False)
    assert t.light == 1.0 and t.full == t.untyped == fit_temperature(s.full, s.labels)


def test_per_path_temperatures_find_an_overconfident_light_path_and_lower_its_ece():
    s = synthetic(light_scale=3.0)
    t = fit_path_temperatures(s, 0.6, per_path=True, per_title=False)
    assert 0.8 < t.full < 1.25  # full-path logits are calibrated
    assert t.light > 1.8  # 3x too sharp (fitted on the confident items it serves only)
    before = ece(*served(s, PathTemperatures(), 0.6)[:2])
    after = ece(*served(s, t, 0.6)[:2])
    assert after < before


def test_per_title_temperature_softens_titles_without_a_product_type():
    s = synthetic(light_scale=1.0, untyped_scale=2.5)
    t = fit_path_temperatures(s, 2.0, per_path=False, per_title=True)  # threshold > 1: nothing goes light
    assert 0.8 < t.full < 1.25
    assert 2.0 < t.untyped < 3.1


def test_cross_validated_ece_fits_on_one_fold_measures_on_the_other_and_keeps_groups_together():
    s = synthetic(n=2000, light_scale=3.0)
    groups = np.arange(2000) // 2  # pairs (a row's full and vague titles) stay in one fold
    seen: list[int] = []

    def fit(sub: CalibrationScores) -> PathTemperatures:
        seen.append(len(sub.labels))
        return fit_path_temperatures(sub, 0.6, per_path=True, per_title=False)

    masks = {"even": np.arange(2000) % 2 == 0, "odd": np.arange(2000) % 2 == 1}
    cv = cross_validated_ece(s, groups, fit, 0.6, masks=masks, folds=2, repeats=2)
    assert set(cv) == {"even", "odd"}
    assert all(n % 2 == 0 for n in seen) and len(seen) == 4 and sum(seen) == 2 * 2000
    unfitted = cross_validated_ece(s, groups, lambda sub: PathTemperatures(), 0.6, folds=2, repeats=1)
    fitted = cross_validated_ece(s, groups, fit, 0.6, folds=2, repeats=1)
    assert fitted["all"] < unfitted["all"]


def test_augmentation_moves_the_foreground_mask_with_the_pixels():
    x = torch.full((4, 3, 32, 32), 255, dtype=torch.uint8)
    x[:, :, 8:20, 2:12] = 30  # a dark product on the left of a white studio background
    a = augment(x, torch.Generator().manual_seed(3))
    b, fg = augment_with_foreground(x, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)  # the same random draws: the mask does not change the augmentation
    assert fg is not None and fg.shape == (4, 32, 32)
    # the product is where the mask is (the colour change leaves dark pixels dark, white ones bright)
    dark = b.mean(1) < 0.5
    assert (dark & (fg > 0.5)).sum() >= 0.9 * dark.sum()
    assert ((fg > 0.5) & ~dark).sum() <= 0.1 * (fg > 0.5).sum() + 8 * 4
    assert augment_with_foreground(x, torch.Generator(), foreground=False)[1] is None


def test_bn_statistics_are_recomputed_from_the_given_images_and_nothing_else_changes():
    from classifier.fusion.modeling import FusionModel
    from classifier.fusion.training import recompute_bn_statistics

    from .factories import tiny_config

    cfg = tiny_config(
        vision_backbone="efficientnet-lite0",
        vision_pretrained=False,
        frozen_blocks=0,
        fused_stages=[0, 1, 2],
        image_size=32,
    )
    model = FusionModel(cfg, 3).eval()
    net = model.backbone.net
    net._bn0.running_mean.fill_(5.0)  # stale statistics
    weights = {k: v.clone() for k, v in model.named_parameters()}
    images = np.random.default_rng(0).integers(0, 256, (8, 3, 32, 32), dtype=np.uint8)
    recompute_bn_statistics(model, images, batch_size=8)
    with torch.no_grad():
        stem = net._conv_stem(model.normalise(torch.from_numpy(images)))
    assert torch.allclose(net._bn0.running_mean, stem.mean((0, 2, 3)), atol=1e-4)
    assert not model.training and abs(net._bn0.momentum - 0.01) < 1e-9 and model.backbone.drop_connect > 0
    assert all(torch.equal(v, weights[k]) for k, v in model.named_parameters())


def test_wilson_lower_bound_is_below_the_observed_share_and_tightens_with_more_items():
    assert wilson_lower_bound(np.array([99]), np.array([100]), 0.0)[0] == 0.99
    small = wilson_lower_bound(np.array([99]), np.array([100]), 1.0)[0]
    large = wilson_lower_bound(np.array([990]), np.array([1000]), 1.0)[0]
    assert 0.97 < small < large < 0.99
    assert abs(small - 0.9741) < 1e-4  # (0.99 + 0.005 - sqrt(0.99 * 0.01 / 100 + 0.000025)) / 1.01


def test_the_bounded_threshold_is_stricter_than_the_observed_one_and_keeps_its_precision():
    rng = np.random.default_rng(0)
    conf = rng.uniform(0.5, 1.0, 4000)
    correct = rng.uniform(size=4000) < conf  # calibrated: right with probability = confidence
    flagged = np.zeros(4000, dtype=bool)
    observed = choose_threshold(conf, correct, flagged, 0.95)
    bounded = choose_threshold(conf, correct, flagged, 0.95, z=1.0)
    assert observed < bounded < 1.0
    accepted = conf >= bounded
    assert correct[accepted].mean() >= 0.95
    # flagged items never count, and a target nothing reaches accepts nothing
    assert choose_threshold(conf, correct, np.ones(4000, dtype=bool), 0.95) > 1.0
    assert choose_threshold(conf, correct, flagged, 1.0, z=1.0) > 1.0
