from classifier.fusion.knowledge import BrandEntry, CategoryNode
from classifier.fusion.text import TYPE_ID, EntityExtractor, KeywordModel

from .factories import tiny_snapshot


def _extractor():
    snap = tiny_snapshot()
    snap = snap.with_changes(
        brands=(*snap.brands, BrandEntry("xiaomi", "Xiaomi", ("小米", "米家", "Mijia"))),
        categories=(
            *snap.categories,
            CategoryNode("Home", "Home", None),
            CategoryNode("Home > Air Fryers", "Air Fryers", "Home", ("空气炸锅",)),
        ),
    )
    return EntityExtractor(snap)


def _by_type(ents):
    out = {}
    for e in ents:
        out.setdefault(e.type, []).append(e.text)
    return out


def test_chinese_title_yields_brand_capacity_type_and_function():
    title = "小米米家智能空气炸锅3.5L家用多功能"
    ents = _extractor().extract(title)
    t = _by_type(ents)
    assert t["brand"] == ["小米", "米家"]
    assert t["capacity"] == ["3.5L"]
    assert t["product_type"] == ["空气炸锅"]
    assert {"智能", "多功能"} <= set(t["function"])
    for e in ents:  # offsets point at the text
        assert title[e.start : e.end] == e.text


def test_english_title_yields_brand_audience_colour_material_and_type():
    ents = _extractor().extract("PUMA Men Black Cotton T-shirt 500ml")
    t = _by_type(ents)
    assert t["brand"] == ["PUMA"] and ents[0].value == "Puma"
    assert t["audience"] == ["Men"] and t["colour"] == ["Black"] and t["material"] == ["Cotton"]
    assert t["product_type"] == ["T-shirt"] and t["capacity"] == ["500ml"]


def test_marketing_noise_is_down_weighted_in_both_scripts():
    ex = _extractor()
    ents = ex.extract("Titan Men Watch HOT SALE limited offer 爆款 限时抢购")
    noise = [e for e in ents if e.type == "noise"]
    assert [e.text for e in noise] == ["HOT SALE", "limited offer", "爆款", "限时抢购"]
    assert all(e.weight < 0.2 for e in noise)
    brand = next(e for e in ents if e.type == "brand")
    assert brand.weight > 5 * noise[0].weight
    # token priors: the tokens over "HOT SALE" carry the noise weight
    title = "Titan Watch hot sale"
    types, weights = ex.token_features(title, [(0, 0), (0, 5), (6, 11), (12, 15), (16, 20), (0, 0)])
    assert types[1] == TYPE_ID["brand"] and types[3] == TYPE_ID["noise"] and weights[3] < 0.2


def test_keyword_weights_are_learned_per_category():
    kw = KeywordModel.fit(["Titan Men Watch"] * 3 + ["Puma Men Tshirt"] * 3, ["W"] * 3 + ["T"] * 3)
    s = kw.scores("Titan watch", ["W", "T"])
    assert s[0] > 0 and s[1] == 0
    assert KeywordModel.from_dict(kw.to_dict()).weights == kw.weights
