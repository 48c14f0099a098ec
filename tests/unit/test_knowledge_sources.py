"""Knowledge import sources parse their formats and name the line of a bad input (no database)."""

from __future__ import annotations

import pytest

from knowledge.importexport.brands_csv import brands_csv_parse
from knowledge.importexport.catalogue import SourceError, catalogue_read
from knowledge.importexport.google_taxonomy import google_taxonomy_parse
from knowledge.importexport.json_graph import graph_json_parse

TAXONOMY = """# Google_Product_Taxonomy_Version: 2021-09-21
Apparel & Accessories
Apparel & Accessories > Clothing
Apparel & Accessories > Clothing > Shirts & Tops
Apparel & Accessories > Shoes
Home & Garden > Kitchen & Dining > Kitchen Appliances > Air Fryers
"""

TAXONOMY_WITH_IDS = """# Google_Product_Taxonomy_Version: 2021-09-21
166 - Apparel & Accessories
1604 - Apparel & Accessories > Clothing
212 - Apparel & Accessories > Clothing > Shirts & Tops
"""


def test_google_taxonomy_builds_the_tree_with_implied_parents_and_deeper_levels():
    snap = google_taxonomy_parse(TAXONOMY.encode())
    ids = {c.id for c in snap.categories}
    assert "Apparel & Accessories > Clothing > Shirts & Tops" in ids
    assert snap.path_of("Home & Garden > Kitchen & Dining > Kitchen Appliances > Air Fryers") == (
        "Home & Garden",
        "Kitchen & Dining",
        "Kitchen Appliances",
        "Air Fryers",
    )
    assert dict(snap.meta)["taxonomy_version"] == "2021-09-21"
    assert snap.category("Apparel & Accessories > Shoes").parent_id == "Apparel & Accessories"


def test_google_taxonomy_id_prefixed_form_gives_the_same_names():
    snap = google_taxonomy_parse(TAXONOMY_WITH_IDS)
    assert sorted(c.id for c in snap.categories) == [
        "Apparel & Accessories",
        "Apparel & Accessories > Clothing",
        "Apparel & Accessories > Clothing > Shirts & Tops",
    ]


def test_google_taxonomy_can_be_rooted_under_one_node():
    snap = google_taxonomy_parse(TAXONOMY_WITH_IDS, root="Google")
    assert snap.has_category("Google > Apparel & Accessories > Clothing")


def test_google_taxonomy_refuses_empty_levels_and_empty_files():
    with pytest.raises(SourceError, match="line 2"):
        google_taxonomy_parse("# Google_Product_Taxonomy_Version: x\nA >  > B\n")
    with pytest.raises(SourceError, match="No category"):
        google_taxonomy_parse("# Google_Product_Taxonomy_Version: x\n")


def test_brands_csv_parses_aliases_in_any_script_and_category_paths():
    data = (
        "name,aliases,categories\n"
        "United Colors of Benetton,UCB|贝纳通,Apparel > Topwear|Apparel > Bottomwear\n"
        "Puma,,Footwear > Shoes\n"
        "\n"
        '"Xiaomi, Inc",小米|Mi,Home\n'
    ).encode()
    rows = brands_csv_parse(data)
    assert [r["name"] for r in rows] == ["United Colors of Benetton", "Puma", "Xiaomi, Inc"]
    assert rows[0]["aliases"] == ["UCB", "贝纳通"]
    assert rows[0]["categories"] == ["Apparel > Topwear", "Apparel > Bottomwear"]
    assert rows[1]["aliases"] == [] and rows[2]["line"] == 5


def test_brands_csv_with_broken_encoding_names_the_line():
    data = b"name,aliases,categories\nPuma,,\n" + "Adidas,Adi,\n".encode("latin-1") + b"Caf\xe9,,\n"
    with pytest.raises(SourceError, match=r"line 4: not valid UTF-8"):
        brands_csv_parse(data)


def test_brands_csv_refuses_a_wrong_header_and_empty_names():
    with pytest.raises(SourceError, match="header must be name,aliases,categories"):
        brands_csv_parse(b"brand,alias\nPuma,\n")
    with pytest.raises(SourceError, match="line 2: the brand name is empty"):
        brands_csv_parse(b"name,aliases,categories\n,x,\n")


def test_graph_json_refuses_garbage_with_the_line():
    with pytest.raises(SourceError, match="line 2"):
        graph_json_parse('{"categories": [\n,]}')
    with pytest.raises(SourceError, match="Not a knowledge graph"):
        graph_json_parse("[1, 2]")


def test_catalogue_source_reads_the_real_catalogue(data_dir):
    snap = catalogue_read(data_dir / "catalogue.csv", splits=("train",))
    assert snap.has_category("Apparel > Topwear > Tshirts")
    assert snap.find_brand("puma") is not None


def test_catalogue_source_names_a_missing_file(tmp_path):
    with pytest.raises(SourceError, match="cannot read"):
        catalogue_read(tmp_path / "nope.csv")
