from PIL import Image

from classifier.fusion.complexity import estimate_complexity

from .factories import synthetic_image


def test_busy_image_is_more_complex_than_a_flat_one():
    flat = estimate_complexity(synthetic_image("flat"))
    busy = estimate_complexity(synthetic_image("noise"))
    assert 0 <= flat.score < busy.score <= 1
    assert busy.edge_density > flat.edge_density and busy.colour_entropy > flat.colour_entropy


def test_complexity_reads_a_64px_thumbnail_whatever_the_image_size():
    # The gate's cost stays flat because the estimate works on a 64x64 thumbnail: a 300 px photo gives
    # exactly the figures of its own thumbnail, and every figure stays in [0, 1].
    img = synthetic_image("noise", size=300)
    thumb = img.resize((64, 64), Image.BILINEAR)
    big = estimate_complexity(img)
    assert big == estimate_complexity(thumb)
    assert all(0 <= v <= 1 for v in (big.gradient_energy, big.colour_entropy, big.edge_density, big.score))
