"""The knowledge editor's rules on PostgreSQL: edits, moves, merges, deletes, aliases, races."""

from __future__ import annotations

import pytest

from classifier.models import Listing, Prediction, ReviewDecision
from knowledge.changelog import KnowledgeError, StaleEdit
from knowledge.graph.brands import brand_alias_add, brand_create, brand_merge
from knowledge.graph.categories import category_delete, category_merge, category_move
from knowledge.graph.nodes import BRANDS, CATEGORIES, node_update
from knowledge.graph.rules import aliases_parse
from knowledge.graph.selectors import graph_problems
from knowledge.models import Brand, BrandAlias, BrandCategory, Category, CategoryAlias, ChangeLog
from tests import factories

pytestmark = [pytest.mark.integration, pytest.mark.django_db]


@pytest.fixture
def tree():
    tshirts = factories.category_path("Apparel", "Topwear", "Tshirts")
    shirts = factories.category_path("Apparel", "Topwear", "Shirts")
    shoes_sandals = factories.category_path("Footwear", "Shoes", "Sandals")
    sandal_sandals = factories.category_path("Footwear", "Sandal", "Sandals")
    return {
        "tshirts": tshirts,
        "shirts": shirts,
        "shoes_sandals": shoes_sandals,
        "sandal_sandals": sandal_sandals,
    }


def test_edit_records_who_when_why_with_before_and_after(ops_user, tree):
    cat = tree["tshirts"]
    node_update(
        CATEGORIES,
        actor=ops_user,
        node=cat,
        expected_version=cat.version,
        name="T-Shirts",
        description="Short-sleeved tops",
        aliases=["Tee", "T恤", "tee"],
        reason="clearer name",
    )
    cat.refresh_from_db()
    assert cat.name == "T-Shirts" and cat.version == 2
    assert sorted(cat.aliases.values_list("alias", flat=True)) == ["Tee", "T恤"]
    entry = ChangeLog.objects.get(action="update", object_id=str(cat.pk))
    assert entry.actor == ops_user and entry.reason == "clearer name"
    assert entry.before["name"] == "Tshirts" and entry.after["name"] == "T-Shirts"
    assert entry.after["aliases"] == ["Tee", "T恤"]
    assert entry.status == ChangeLog.Status.PENDING


def test_a_stale_edit_is_refused_naming_who_changed_the_row(ops_user, admin_user, tree):
    cat = tree["tshirts"]
    opened_at = cat.version
    node_update(
        CATEGORIES,
        actor=admin_user,
        node=cat,
        expected_version=opened_at,
        name="Tees",
        description="",
        reason="x",
    )
    with pytest.raises(StaleEdit, match="changed by ada"):
        node_update(
            CATEGORIES, actor=ops_user, node=cat, expected_version=opened_at, name="Tshirts!", description=""
        )
    cat.refresh_from_db()
    assert cat.name == "Tees"


def test_moving_a_node_under_its_own_descendant_is_refused(ops_user, tree):
    apparel = Category.objects.get(name="Apparel", parent=None)
    with pytest.raises(KnowledgeError, match="own subtree"):
        category_move(
            actor=ops_user, category=apparel, new_parent=tree["tshirts"], expected_version=apparel.version
        )
    apparel.refresh_from_db()
    assert apparel.parent is None


def test_move_changes_the_path_and_refuses_a_sibling_name_clash(ops_user, tree):
    sandals = tree["sandal_sandals"]
    shoes = tree["shoes_sandals"].parent
    with pytest.raises(KnowledgeError, match="already a category 'Sandals' under Footwear > Shoes"):
        category_move(actor=ops_user, category=sandals, new_parent=shoes, expected_version=sandals.version)
    topwear = tree["tshirts"].parent
    moved = category_move(
        actor=ops_user,
        category=tree["shirts"],
        new_parent=topwear.parent,
        expected_version=tree["shirts"].version,
    )
    assert moved.path_label == "Apparel > Shirts"


def test_same_name_under_two_parents_shows_on_the_problems_panel(tree):
    codes = [p for p in graph_problems() if p["code"] == "duplicate_category_name"]
    assert any(
        "Footwear > Sandal > Sandals" in p["message"] and "Footwear > Shoes > Sandals" in p["message"]
        for p in codes
    )


def test_merging_duplicate_categories_moves_listings_predictions_and_aliases(ops_user, tree):
    source, target = tree["sandal_sandals"], tree["shoes_sandals"]
    CategoryAlias.objects.create(category=source, alias="Flip flops")
    brand = factories.brand("Bata", sells=source)
    task = factories.review_task(category=source, brand_obj=brand)
    Listing.objects.filter(pk=task.listing_id).update(final_category=source)
    ReviewDecision.objects.create(
        task=task, listing=task.listing, auditor=ops_user, action="correct", category=source, brand=brand
    )
    category_merge(actor=ops_user, source=source, target=target, reason="duplicate")
    assert not Category.objects.filter(pk=source.pk).exists()
    assert Listing.objects.get(pk=task.listing_id).final_category == target
    assert Prediction.objects.get(pk=task.prediction_id).category == target
    task.refresh_from_db()
    assert task.category == target
    assert ReviewDecision.objects.get(task=task).category == target
    assert set(target.aliases.values_list("alias", flat=True)) == {"Flip flops"}  # same name: no self-alias
    assert BrandCategory.objects.filter(brand=brand, category=target).exists()
    assert not any(p["code"] == "duplicate_category_name" for p in graph_problems())


def test_merging_brands_moves_everything_and_keeps_the_old_name_as_alias(ops_user, tree):
    target = factories.brand("Puma", sells=tree["tshirts"])
    source = factories.brand("PUMA Sports", sells=tree["shirts"])
    BrandAlias.objects.create(brand=source, alias="彪马")
    task = factories.review_task(category=tree["tshirts"], brand_obj=source)
    Listing.objects.filter(pk=task.listing_id).update(final_brand=source)
    brand_merge(actor=ops_user, source=source, target=target, reason="same brand")
    assert not Brand.objects.filter(pk=source.pk).exists()
    assert Listing.objects.get(pk=task.listing_id).final_brand == target
    assert Prediction.objects.get(pk=task.prediction_id).brand == target
    assert set(target.aliases.values_list("alias", flat=True)) == {"PUMA Sports", "彪马"}
    assert set(BrandCategory.objects.filter(brand=target).values_list("category", flat=True)) == {
        tree["tshirts"].pk,
        tree["shirts"].pk,
    }


def test_deleting_a_category_that_listings_use_is_refused_with_the_count(ops_user, tree):
    cat = tree["shirts"]
    for _ in range(2):
        task = factories.review_task(category=cat)
        Listing.objects.filter(pk=task.listing_id).update(final_category=cat)
    with pytest.raises(KnowledgeError, match=r"2 listings .* merge it into another category"):
        category_delete(actor=ops_user, category=cat, expected_version=cat.version)
    assert Category.objects.filter(pk=cat.pk).exists()
    empty = factories.category_path("Apparel", "Topwear", "Capes")
    category_delete(actor=ops_user, category=empty, expected_version=empty.version)
    assert not Category.objects.filter(pk=empty.pk).exists()


def test_duplicate_alias_across_brands_is_refused_naming_the_other_brand(ops_user):
    nike = brand_create(actor=ops_user, name="Nike", aliases=["耐克"])
    adidas = brand_create(actor=ops_user, name="Adidas")
    with pytest.raises(KnowledgeError, match="already belongs to brand 'Nike'"):
        node_update(
            BRANDS,
            actor=ops_user,
            node=adidas,
            expected_version=adidas.version,
            name="Adidas",
            description="",
            aliases=["阿迪达斯", "耐克"],
        )
    with pytest.raises(KnowledgeError, match="is the name of brand 'Nike'"):
        brand_alias_add(actor=ops_user, brand=adidas, alias="nike")
    assert not adidas.aliases.exists()
    assert list(nike.aliases.values_list("alias", flat=True)) == ["耐克"]


def test_an_alias_of_5000_characters_is_refused_with_the_limit(ops_user):
    brand = brand_create(actor=ops_user, name="Wrangler")
    with pytest.raises(KnowledgeError, match="5000 characters long; the limit is 200"):
        brand_alias_add(actor=ops_user, brand=brand, alias="x" * 5000)
    cat = factories.category_path("Apparel")
    with pytest.raises(KnowledgeError, match="limit is 200"):
        node_update(
            CATEGORIES,
            actor=ops_user,
            node=cat,
            expected_version=cat.version,
            name="Apparel",
            description="",
            aliases=["y" * 5000],
        )


def test_bulk_alias_edit_replaces_the_set_one_per_line(ops_user):
    brand = brand_create(actor=ops_user, name="United Colors of Benetton", aliases=["Benetton"])
    text = "UCB\n\n  贝纳通 \nBenetton\nUCB\n"
    node_update(
        BRANDS,
        actor=ops_user,
        node=brand,
        expected_version=brand.version,
        name=brand.name,
        description="",
        aliases=aliases_parse(text),
    )
    assert sorted(brand.aliases.values_list("alias", flat=True)) == ["Benetton", "UCB", "贝纳通"]


def test_brand_csv_import_is_all_or_nothing_and_names_the_line(ops_user, tree):
    from knowledge.importexport.brands_csv import brands_csv_import

    ok = "name,aliases,categories\nLevis,Levi's|李维斯,Apparel > Topwear\n".encode()
    counts = brands_csv_import(data=ok, actor=ops_user)
    assert counts["created"] == 1 and counts["aliases"] == 2 and counts["relations"] == 1
    bad = b"name,aliases,categories\nLee,,Apparel\nGap,,Apparel > Nowhere\n"
    with pytest.raises(KnowledgeError, match="line 3: unknown category 'Apparel > Nowhere'"):
        brands_csv_import(data=bad, actor=ops_user)
    assert not Brand.objects.filter(name="Lee").exists()


def test_google_taxonomy_import_adds_a_deeper_tree(ops_user):
    from knowledge.importexport.google_taxonomy import google_taxonomy_import

    text = "# Google_Product_Taxonomy_Version: 2021-09-21\n1604 - Apparel & Accessories > Clothing > Shirts & Tops\n"
    created = google_taxonomy_import(data=text, actor=ops_user)
    assert created["categories"] == 3
    assert (
        Category.objects.get(name="Shirts & Tops").path_label
        == "Apparel & Accessories > Clothing > Shirts & Tops"
    )
