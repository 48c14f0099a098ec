"""The graph: merges move everything and roll back with the version; bad imports change nothing."""

from __future__ import annotations

import pytest
from django.core.cache import cache as django_cache
from django.core.management import call_command

from classifier.fusion.knowledge import BrandEntry, CategoryNode, KnowledgeSnapshot
from classifier.models import Listing, Prediction
from knowledge import cache
from knowledge.changelog import KnowledgeError
from knowledge.graph.categories import category_merge
from knowledge.importexport.services import graph_import_snapshot
from knowledge.models import Brand, BrandAlias, BrandCategory, Category, ChangeLog
from knowledge.versions.publish import knowledge_publish, knowledge_version_restore
from tests import factories

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

PERFUMES = "Personal Care > Perfumes > Perfume and Body Mist"
FRAGRANCE = "Personal Care > Fragrance > Perfume and Body Mist"


@pytest.fixture(autouse=True)
def clean_cache():
    django_cache.delete_many(
        [cache.VERSION_KEY, *(cache.SNAPSHOT_KEY.format(version=n) for n in range(1, 20))]
    )
    cache.memo_clear()
    yield
    cache.memo_clear()


def _counts() -> tuple[int, int, int, int]:
    return (
        Category.objects.count(),
        Brand.objects.count(),
        BrandAlias.objects.count(),
        BrandCategory.objects.count(),
    )


def test_merge_moves_listings_predictions_and_relations_and_rolls_back_with_the_version(ops_user):
    perfumes = factories.category_path("Personal Care", "Perfumes", "Perfume and Body Mist")
    fragrance = factories.category_path("Personal Care", "Fragrance", "Perfume and Body Mist")
    engage = factories.brand("Engage")
    BrandCategory.objects.create(brand=engage, category=perfumes, support=5, source="import")
    BrandCategory.objects.create(brand=engage, category=fragrance, support=3, source="import")
    task = factories.review_task(title="Engage Men Perfume", category=perfumes, brand_obj=engage)
    Listing.objects.filter(pk=task.listing_id).update(final_category=perfumes)
    v1 = knowledge_publish(actor=ops_user, reason="two names for one thing")

    category_merge(
        actor=ops_user, source=perfumes.parent, target=fragrance.parent, reason="Perfumes means Fragrance"
    )
    assert not Category.objects.filter(pk=perfumes.pk).exists()
    assert Listing.objects.get(pk=task.listing_id).final_category_id == fragrance.pk
    assert Prediction.objects.get(pk=task.prediction_id).category_id == fragrance.pk
    relation = BrandCategory.objects.get(brand=engage)
    assert relation.category_id == fragrance.pk and relation.support == 8, "the evidence adds up"
    merge = ChangeLog.objects.filter(action="merge", object_id=str(fragrance.pk)).first()
    assert merge.after["moved_ids"]["listings"] == [task.listing_id]
    v2 = knowledge_publish(actor=ops_user, reason="merged")
    assert not cache.snapshot_current().has_category(PERFUMES)

    v3 = knowledge_version_restore(actor=ops_user, number=v1.number, reason="the merge was wrong")
    assert v3.number == v2.number + 1
    restored = Category.objects.get(name="Perfume and Body Mist", parent__name="Perfumes")
    assert restored.path_label == PERFUMES
    assert Listing.objects.get(pk=task.listing_id).final_category_id == restored.pk
    assert Prediction.objects.get(pk=task.prediction_id).category_id == restored.pk
    supports = {bc.category.path_label: bc.support for bc in BrandCategory.objects.filter(brand=engage)}
    assert supports == {PERFUMES: 5, FRAGRANCE: 3}
    assert cache.snapshot_current().has_category(PERFUMES)


def _snapshot(categories, brands=()) -> KnowledgeSnapshot:
    return KnowledgeSnapshot(1, tuple(categories), tuple(brands))


ROOT = CategoryNode("Apparel", "Apparel", None)
TOP = CategoryNode("Apparel > Topwear", "Topwear", "Apparel")


@pytest.mark.parametrize(
    ("snapshot", "message"),
    [
        (
            _snapshot([CategoryNode("A", "A", "B"), CategoryNode("B", "B", "A")]),
            "cycle in the category tree",
        ),
        (
            _snapshot([ROOT, TOP, CategoryNode("Apparel > topwear", "topwear", "Apparel")]),
            "two categories named 'topwear' under Apparel",
        ),
        (
            _snapshot([ROOT], [BrandEntry("1", "Nike"), BrandEntry("2", "NIKE")]),
            "brand 'NIKE' appears twice",
        ),
        (
            _snapshot([ROOT], [BrandEntry("1", "Nike"), BrandEntry("2", "Puma", ("nike",))]),
            "alias 'nike' of brand 'Puma' is also brand 'nike'",
        ),
        (
            _snapshot([ROOT], [BrandEntry("1", "Puma", (), ("Footwear > Shoes",))]),
            "sells 'Footwear > Shoes', which is not in the file",
        ),
        (_snapshot([CategoryNode("X > Y", "Y", "X")]), "parent 'X' is not in the file"),
    ],
    ids=["cycle", "duplicate-category", "duplicate-brand", "alias-collision", "unknown-relation", "orphan"],
)
def test_a_bad_import_is_refused_with_its_problems_and_changes_nothing(snapshot, message):
    factories.brand("Adidas")
    before = _counts()
    with pytest.raises(KnowledgeError) as err:
        graph_import_snapshot(snapshot=snapshot)
    assert "Nothing was imported" in str(err.value) and message in str(err.value)
    assert _counts() == before


def test_an_alias_the_graph_gives_to_another_brand_is_refused():
    factories.brand("Reebok")
    BrandAlias.objects.create(brand=factories.brand("Puma"), alias="Cat Remix")
    before = _counts()
    snapshot = _snapshot(
        [ROOT], [BrandEntry("1", "Kappa", ("cat remix",)), BrandEntry("2", "Fila", ("REEBOK",))]
    )
    with pytest.raises(KnowledgeError) as err:
        graph_import_snapshot(snapshot=snapshot)
    assert "already belongs to brand 'Puma'" in str(err.value)
    assert "already belongs to brand 'Reebok'" in str(err.value)
    assert _counts() == before


def test_fifty_thousand_brands_import_in_one_go_and_one_bad_row_stops_all_of_them():
    leaf = CategoryNode("Apparel > Topwear > Tshirts", "Tshirts", "Apparel > Topwear")
    brands = [
        BrandEntry(str(i), f"Brand {i:05d}", (f"B{i:05d}",), (leaf.id,), (i % 40,)) for i in range(50_000)
    ]
    bad = _snapshot([ROOT, TOP, leaf], [*brands, BrandEntry("x", "Brand X", ("b00007",))])
    before = _counts()
    with pytest.raises(KnowledgeError, match="alias 'b00007' of brand 'Brand X'"):
        graph_import_snapshot(snapshot=bad)
    assert _counts() == before, "nothing half-applied"
    result = graph_import_snapshot(snapshot=_snapshot([ROOT, TOP, leaf], brands))
    assert result["brands"] == 50_000 and result["aliases"] == 50_000 and result["relations"] == 50_000
    assert BrandCategory.objects.get(brand__name="Brand 00039").support == 39
    again = graph_import_snapshot(snapshot=_snapshot([ROOT, TOP, leaf], brands))
    assert again["brands"] == 0 and again["relations"] == 0, "a re-import is idempotent"


def test_catalogue_import_reports_merges_and_keeps_support(tmp_path):
    csv_path = tmp_path / "catalogue.csv"
    rows = ["id,title,master_category,sub_category,article_type,gender,split"]
    rows += [f"{i},Bata Men Sandals,Footwear,Sandal,Sandals,Men,train" for i in range(30)]
    rows += ["99,Bata Men Sandals,Footwear,Shoes,Sandals,Men,train"]
    rows += [f"{100 + i},Lakme Lipstick,Personal Care,Lips,Lipstick,Women,train" for i in range(4)]
    csv_path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    out = []

    class Out:
        def write(self, text: str) -> None:
            out.append(text)

    call_command("knowledge_import_catalogue", str(csv_path), "--splits", "train", stdout=Out())
    text = "".join(out)
    assert "merged Footwear > Shoes > Sandals into Footwear > Sandal > Sandals" in text
    assert BrandCategory.objects.get(brand__name="Bata").support == 31
    lakme = BrandCategory.objects.get(brand__name="Lakme")
    assert lakme.support == 4 and lakme.source == BrandCategory.Source.MINED
    assert cache.snapshot_current().find_brand("LAKME").category_support == (4,)
