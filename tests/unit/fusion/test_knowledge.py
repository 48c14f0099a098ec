import csv

import pytest

from classifier.fusion.catalogue_snapshot import snapshot_from_catalogue
from classifier.fusion.knowledge import KnowledgeSnapshot

from .factories import tiny_snapshot


def test_snapshot_survives_a_json_round_trip_with_the_same_checksum():
    snap = tiny_snapshot()
    again = KnowledgeSnapshot.from_json(snap.to_json())
    assert again == snap
    assert again.checksum() == snap.checksum()
    assert snap.with_changes().checksum() != snap.checksum()  # version bump changes the checksum


def test_snapshot_is_immutable():
    with pytest.raises(AttributeError):
        tiny_snapshot().version = 2


def test_path_of_and_leaves_follow_the_tree():
    snap = tiny_snapshot()
    assert snap.path_of("Apparel > Topwear > Tshirts") == ("Apparel", "Topwear", "Tshirts")
    assert {c.id for c in snap.leaves()} == {
        "Apparel > Topwear > Tshirts",
        "Footwear > Shoes > Casual Shoes",
        "Accessories > Watches > Watches",
    }


def test_catalogue_miner_merges_brand_spellings_and_records_what_they_sell(tmp_path):
    p = tmp_path / "c.csv"
    rows = [
        ("1", "ADIDAS Men Blue Tshirt", "Apparel", "Topwear", "Tshirts", "Men", "train"),
        ("2", "Adidas Women Running Shoes", "Footwear", "Shoes", "Sports Shoes", "Women", "train"),
        ("3", "Adidas Men Black Tshirt", "Apparel", "Topwear", "Tshirts", "Men", "val"),
        ("4", "Titan Men Watch", "Accessories", "Watches", "Watches", "Men", "test"),
    ]
    with open(p, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "title", "master_category", "sub_category", "article_type", "gender", "split"])
        w.writerows(rows)
    snap = snapshot_from_catalogue(p)
    b = snap.find_brand("adidas")
    assert b is not None and b.name == "Adidas" and "ADIDAS" in b.aliases
    assert set(b.category_ids) == {"Apparel > Topwear > Tshirts", "Footwear > Shoes > Sports Shoes"}
    assert snap.find_brand("titan") is None  # test rows are not read by default
    assert "Accessories > Watches > Watches" not in {c.id for c in snap.categories}
