"""The publish path's fast snapshot serialisation is byte-identical to the fusion package's own."""

from __future__ import annotations

import hashlib
import json

from classifier.fusion.knowledge import AttributeRule, BrandEntry, CategoryNode, EntityTerm, KnowledgeSnapshot
from knowledge.versions.preview import brand_category_conflict
from knowledge.versions.snapshot import snapshot_as_dict


def small_snapshot() -> KnowledgeSnapshot:
    return KnowledgeSnapshot(
        version=3,
        categories=(
            CategoryNode("Apparel", "Apparel", None, ("服装",), "clothes"),
            CategoryNode("Apparel > Topwear", "Topwear", "Apparel"),
            CategoryNode("Apparel > Topwear > Tshirts", "Tshirts", "Apparel > Topwear", ("Tee", "T恤")),
            CategoryNode("Footwear", "Footwear", None),
        ),
        brands=(BrandEntry("7", "Puma", ("彪马",), ("Apparel > Topwear",)),),
        attribute_rules=(AttributeRule("Apparel > Topwear > Tshirts", "audience", ("Men", "Women"), True),),
        noise_terms=("hot sale", "爆款"),
        entity_terms=(EntityTerm("cotton", "material", 0.5),),
        meta=(("source", "test"),),
    )


def test_fast_dict_equals_to_dict_and_gives_the_same_checksum():
    snap = small_snapshot()
    assert snapshot_as_dict(snap) == json.loads(snap.to_json())
    raw = json.dumps(snapshot_as_dict(snap), ensure_ascii=False, sort_keys=True)
    assert raw == snap.to_json()
    assert hashlib.sha256(raw.encode()).hexdigest()[:16] == snap.checksum()


def test_catalogue_snapshot_round_trips_through_the_fast_dict(data_dir):
    from classifier.fusion.catalogue_snapshot import snapshot_from_catalogue

    snap = snapshot_from_catalogue(data_dir / "catalogue.csv", splits=("train",))
    assert json.dumps(snapshot_as_dict(snap), ensure_ascii=False, sort_keys=True) == snap.to_json()


def test_brand_selling_a_parent_sells_everything_below_it():
    snap = small_snapshot()
    assert not brand_category_conflict(snap, brand_name="彪马", category_id="Apparel > Topwear > Tshirts")
    assert brand_category_conflict(snap, brand_name="Puma", category_id="Footwear")
    assert not brand_category_conflict(snap, brand_name="Unknown", category_id="Footwear")
