"""The knowledge check flags only what the graph has evidence against; brands match by whole words."""

from __future__ import annotations

import csv
import json

from classifier.fusion.catalogue_snapshot import snapshot_from_catalogue
from classifier.fusion.knowledge import AttributeRule, BrandEntry, CategoryNode, KnowledgeSnapshot
from classifier.fusion.routing import RouteReason, route
from classifier.fusion.text import EntityExtractor
from classifier.fusion.verification import MIN_BRAND_SUPPORT, verify

TSHIRTS = "Apparel > Topwear > Tshirts"
SHIRTS = "Apparel > Topwear > Shirts"
CASUAL = "Footwear > Shoes > Casual Shoes"
SANDALS = "Footwear > Sandal > Sandals"
STRAY_SANDALS = "Footwear > Shoes > Sandals"
WATCHES = "Accessories > Watches > Watches"
CAPS = "Accessories > Headwear > Caps"


def _tree(*leaves: str) -> tuple[CategoryNode, ...]:
    nodes: dict[str, CategoryNode] = {}
    for leaf in leaves:
        parts = leaf.split(" > ")
        for depth in range(len(parts)):
            cid = " > ".join(parts[: depth + 1])
            nodes.setdefault(cid, CategoryNode(cid, parts[depth], " > ".join(parts[:depth]) or None))
    return tuple(nodes.values())


def _snapshot(*brands: BrandEntry, rules: tuple[AttributeRule, ...] = ()) -> KnowledgeSnapshot:
    return KnowledgeSnapshot(
        1,
        _tree(TSHIRTS, SHIRTS, CASUAL, SANDALS, STRAY_SANDALS, WATCHES, CAPS),
        tuple(brands),
        attribute_rules=rules,
    )


def _check(snapshot: KnowledgeSnapshot, title: str, leaf: str) -> list[dict]:
    return verify(snapshot, leaf, EntityExtractor(snapshot).extract(title))


def _severities(findings: list[dict], code: str) -> list[str]:
    return [f["severity"] for f in findings if f["code"] == code]


def test_well_supported_brand_never_seen_in_the_branch_is_a_conflict():
    snap = _snapshot(BrandEntry("titan", "Titan", (), (WATCHES,), (MIN_BRAND_SUPPORT + 5,)))
    findings = _check(snap, "Titan Men Blue Tshirt", TSHIRTS)
    assert _severities(findings, "brand_category") == ["conflict"]
    assert route(confidence=0.99, threshold=0.9, findings=findings).reasons == (
        RouteReason.KNOWLEDGE_CONFLICT,
    )


def test_thin_brand_record_is_only_a_hint_and_does_not_route():
    snap = _snapshot(BrandEntry("puma", "Puma", (), (CASUAL,), (3,)))
    findings = _check(snap, "Puma Men Blue Cap", CAPS)
    assert _severities(findings, "brand_category") == ["hint"]
    assert "not seen in" in findings[0]["message"] and "seen 3 times" in findings[0]["message"]
    assert not route(confidence=0.99, threshold=0.9, findings=findings).needs_review


def test_uncounted_relations_are_never_evidence():
    # an older snapshot (or an ops relation without a count): the brand sells there, nothing more
    snap = _snapshot(BrandEntry("titan", "Titan", (), (WATCHES,)))
    assert _severities(_check(snap, "Titan Men Blue Tshirt", TSHIRTS), "brand_category") == ["hint"]


def test_brand_seen_elsewhere_in_the_same_branch_or_same_type_is_no_finding():
    snap = _snapshot(
        BrandEntry("puma", "Puma", (), (TSHIRTS, STRAY_SANDALS), (200, 40)),
    )
    assert _check(snap, "Puma Men White Shirt", SHIRTS) == []  # same sub-category, other leaf
    assert _check(snap, "Puma Men Sandals", SANDALS) == []  # the same type under another parent


def test_relation_above_the_predicted_leaf_covers_it():
    snap = _snapshot(BrandEntry("puma", "Puma", (), (TSHIRTS, "Accessories"), (200, 0)))
    assert _check(snap, "Puma Unisex Cap", CAPS) == []


def test_title_naming_another_type_is_a_hint():
    snap = _snapshot()
    findings = _check(snap, "Blue Tshirt", CASUAL)
    assert _severities(findings, "title_type") == ["hint"]


def test_attribute_rule_routes_only_when_required():
    mined = AttributeRule(TSHIRTS, "audience", ("Women",))
    required = AttributeRule(TSHIRTS, "audience", ("Women",), required=True)
    assert _severities(_check(_snapshot(rules=(mined,)), "Men Tshirt", TSHIRTS), "attribute") == ["hint"]
    assert _severities(_check(_snapshot(rules=(required,)), "Men Tshirt", TSHIRTS), "attribute") == [
        "conflict"
    ]


def test_unknown_category_is_a_conflict():
    findings = verify(_snapshot(), "Apparel > Topwear > Capes", [])
    assert route(confidence=1.0, threshold=0.5, findings=findings).primary == "unknown_category"


def test_brand_matching_is_whole_words_longest_first_and_folded():
    snap = _snapshot(
        BrandEntry("a", "ADIDAS", (), (TSHIRTS,), (100,)),
        BrandEntry("ao", "ADIDAS Original", (), (WATCHES,), (1,)),
        BrandEntry("aos", "ADIDAS Originals", (), (CASUAL,), (80,)),
        BrandEntry("lakme", "Lakmé", ("LAKME",), (), ()),
        BrandEntry("ucb", "United Colors of Benetton", ("UCB",), (TSHIRTS,), (50,)),
    )
    extractor = EntityExtractor(snap)

    def brands(title: str) -> list[str]:
        return [e.value for e in extractor.extract(title) if e.type == "brand"]

    assert brands("ADIDAS Originals Men Shoes") == ["ADIDAS Originals"]
    assert brands("adidas original Men Watch") == ["ADIDAS Original"]
    assert brands("Adidas Men Tshirt") == ["ADIDAS"]
    assert brands("LAKME Absolute Lip Color") == ["Lakmé"]
    assert brands("lakmé Lipstick") == ["Lakmé"]
    assert brands("United Colors of Benetton Men Tshirt") == ["United Colors of Benetton"]
    assert brands("Adidasx Men Tshirt") == []  # never a prefix of a word
    assert snap.find_brand("LAKMÉ").name == "Lakmé"


def _write(path, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "title", "master_category", "sub_category", "article_type", "gender", "split"])
        w.writerows(rows)


def test_catalogue_miner_counts_support_finds_bare_brands_and_reports_merges(tmp_path):
    p = tmp_path / "c.csv"
    rows = [
        (str(i), "Lakme Absolute Lipstick", "Personal Care", "Lips", "Lipstick", "Women", "train")
        for i in range(3)
    ]
    rows += [
        (str(10 + i), "Puma Men Tshirt", "Apparel", "Topwear", "Tshirts", "Men", "train") for i in range(5)
    ]
    rows += [
        (str(20 + i), "Bata Men Sandals", "Footwear", "Sandal", "Sandals", "Men", "train") for i in range(40)
    ]
    rows += [("90", "Bata Men Sandals", "Footwear", "Shoes", "Sandals", "Men", "train")]
    rows += [("91", "Puma Men Perfume", "Personal Care", "Perfumes", "Perfume and Body Mist", "Men", "train")]
    rows += [
        (
            str(100 + i),
            "Puma Men Perfume",
            "Personal Care",
            "Fragrance",
            "Perfume and Body Mist",
            "Men",
            "train",
        )
        for i in range(4)
    ]
    rows += [("95", "Puma Men Deo", "Personal Care", "Fragrance", "Deodorant", "Men", "train")]
    _write(p, rows)
    snap = snapshot_from_catalogue(p, splits=("train",), merge_duplicates=True)
    lakme = snap.find_brand("lakme")
    assert lakme is not None and lakme.category_ids == ("Personal Care > Lips > Lipstick",)
    assert lakme.category_support == (3,)
    merged = json.loads(dict(snap.meta)["merged"])
    assert merged[STRAY_SANDALS] == SANDALS
    assert merged["Personal Care > Perfumes"] == "Personal Care > Fragrance"
    assert merged["Personal Care > Perfumes > Perfume and Body Mist"] == (
        "Personal Care > Fragrance > Perfume and Body Mist"
    )
    assert not snap.has_category(STRAY_SANDALS) and snap.redirect(STRAY_SANDALS) == SANDALS
    bata = snap.find_brand("Bata")
    assert dict(zip(bata.category_ids, bata.category_support, strict=True)) == {SANDALS: 41}
    assert "Perfumes" in snap.category("Personal Care > Fragrance").aliases
    report = json.loads(dict(snap.meta)["merge_report"])
    assert all(len(item) == 3 and item[2] for item in report)  # every merge says why
    # without the option nothing is merged (the model's training labels are left alone)
    assert snapshot_from_catalogue(p, splits=("train",)).has_category(STRAY_SANDALS)


def test_a_generalist_not_seen_in_a_branch_yet_is_a_hint_but_not_in_a_whole_master_category():
    leaves = [f"Apparel > Sub{i} > Leaf{i}" for i in range(5)]
    snap = KnowledgeSnapshot(
        1,
        _tree(*leaves, "Apparel > Topwear > Tshirts", WATCHES),
        (BrandEntry("pe", "Peter England", (), tuple(leaves), (20, 20, 20, 20, 20)),),
    )
    # 100 listings spread over five sub-categories: an unseen sixth one is not evidence
    assert _severities(_check(snap, "Peter England Men Tshirt", TSHIRTS), "brand_category") == ["hint"]
    # ...but never once in Accessories is
    findings = _check(snap, "Peter England Men Watch", WATCHES)
    assert _severities(findings, "brand_category") == ["conflict"]
    assert "none in Accessories" in findings[0]["message"]


def test_a_specialist_brand_outside_its_trade_is_a_conflict_within_the_same_master():
    flip_flops = "Footwear > Flip Flops > Flip Flops"
    snap = KnowledgeSnapshot(
        1,
        _tree(CASUAL, SANDALS, flip_flops),
        (BrandEntry("woodland", "Woodland", (), (CASUAL, SANDALS), (90, 5)),),
    )
    findings = _check(snap, "Woodland Men Flip Flops", flip_flops)
    assert _severities(findings, "brand_category") == ["conflict"]
    assert "none in Flip Flops" in findings[0]["message"]
