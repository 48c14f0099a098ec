import time

from classifier.fusion.complexity import estimate_complexity

from .factories import synthetic_image


def test_busy_image_is_more_complex_than_a_flat_one():
    flat = estimate_complexity(synthetic_image("flat"))
    busy = estimate_complexity(synthetic_image("noise"))
    assert 0 <= flat.score < busy.score <= 1
    assert busy.edge_density > flat.edge_density and busy.colour_entropy > flat.colour_entropy


def test_complexity_costs_well_under_5_ms_per_image():
    img = synthetic_image("noise", size=300)
    estimate_complexity(img)
    t = time.perf_counter()
    for _ in range(20):
        estimate_complexity(img)
    assert (time.perf_counter() - t) / 20 < 0.005
