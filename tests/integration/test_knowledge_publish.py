"""Publishing: versioned snapshots, the entity cache, a Redis outage, discard, restore, impact preview."""

from __future__ import annotations

import pytest
from django.core.cache import cache as django_cache

from classifier.fusion.knowledge import KnowledgeSnapshot
from knowledge import cache
from knowledge.changelog import KnowledgeError
from knowledge.graph.brands import brand_category_add, brand_category_remove, brand_create
from knowledge.graph.categories import category_create, category_move
from knowledge.graph.nodes import BRANDS, CATEGORIES, node_update
from knowledge.models import BrandCategory, Category, ChangeLog, KnowledgeVersion
from knowledge.versions.activation import knowledge_activation_sweep, snapshot_push
from knowledge.versions.preview import impact_preview
from knowledge.versions.publish import knowledge_discard, knowledge_publish, knowledge_version_restore
from knowledge.versions.snapshot import snapshot_build_with_ids
from tests import factories

pytestmark = [pytest.mark.integration, pytest.mark.django_db]


@pytest.fixture(autouse=True)
def clean_cache():
    django_cache.delete_many(
        [cache.VERSION_KEY, *(cache.SNAPSHOT_KEY.format(version=n) for n in range(1, 20))]
    )
    cache.memo_clear()
    yield
    cache.memo_clear()


@pytest.fixture
def published(ops_user):
    tshirts = factories.category_path("Apparel", "Topwear", "Tshirts")
    factories.category_path("Footwear", "Shoes", "Sandals")
    factories.category_path("Footwear", "Sandal", "Sandals")
    factories.brand("Puma", sells=tshirts)
    return knowledge_publish(actor=ops_user, reason="baseline")


def test_publish_versions_the_graph_and_workers_see_it_with_one_cheap_read(ops_user, published):
    assert published.number == 1 and published.activated_at is not None
    assert cache.snapshot_version_current() == 1
    snap = cache.snapshot_current()
    assert snap.has_category("Apparel > Topwear > Tshirts")
    brand = brand_create(actor=ops_user, name="Xiaomi", aliases=["小米"], reason="new brand")
    assert cache.snapshot_version_current() == 1, "an unpublished edit must not reach the workers"
    v2 = knowledge_publish(actor=ops_user, reason="add Xiaomi")
    assert cache.snapshot_version_current() == 2
    assert cache.snapshot_current().find_brand("小米").name == "Xiaomi"
    assert ChangeLog.objects.get(action="create", object_id=str(brand.pk)).knowledge_version == v2
    assert v2.created_by == ops_user and v2.reason == "add Xiaomi"


def test_publish_without_a_reason_is_refused(ops_user):
    with pytest.raises(KnowledgeError, match="why"):
        knowledge_publish(actor=ops_user, reason="  ")


def test_a_redis_outage_during_publish_keeps_the_previous_snapshot_and_the_retry_applies_it(
    ops_user, published, monkeypatch
):
    brand_create(actor=ops_user, name="Nike")
    real_set = django_cache.set

    def set_fails_for_the_pointer(key, *args, **kwargs):
        # The body write succeeds, the pointer write dies: the worst moment for an outage.
        if key == cache.VERSION_KEY:
            raise ConnectionError("redis went away")
        return real_set(key, *args, **kwargs)

    monkeypatch.setattr(django_cache, "set", set_fails_for_the_pointer)
    v2 = knowledge_publish(actor=ops_user, reason="add Nike")
    assert v2.number == 2 and v2.activated_at is None  # the row (source of truth) is there
    assert cache.snapshot_version_current() == 1  # ...but the previous snapshot stays in force
    assert cache.snapshot_current().find_brand("Nike") is None

    # While Redis is fully down readers fall back to the newest *activated* row: still v1.
    def get_fails(*args, **kwargs):
        raise ConnectionError("redis went away")

    monkeypatch.setattr(django_cache, "get", get_fails)
    assert cache.snapshot_version_current() == 1
    monkeypatch.undo()

    from fusionreview.celery import app
    from knowledge.versions.tasks import knowledge_activation_sweep, knowledge_snapshot_push

    for task in (knowledge_snapshot_push, knowledge_activation_sweep):  # routed by CELERY_TASK_ROUTES
        assert app.amqp.router.route({}, task.name)["queue"].name == "default"
    assert knowledge_snapshot_push.apply(args=[2]).get() is True
    assert cache.snapshot_version_current() == 2
    assert cache.snapshot_current().find_brand("Nike") is not None
    assert KnowledgeVersion.objects.get(number=2).activated_at is not None
    # Idempotent: a redelivered push changes nothing.
    assert knowledge_snapshot_push.apply(args=[2]).get() is True
    assert cache.snapshot_version_current() == 2


def test_a_late_retry_of_an_older_version_never_moves_the_pointer_back(ops_user, published):
    knowledge_publish(actor=ops_user, reason="v2")
    snapshot_push(number=1)
    assert cache.snapshot_version_current() == 2


def test_the_publish_retry_is_queued_on_the_default_queue_when_the_cache_is_down(
    ops_user, published, monkeypatch, settings
):
    settings.CELERY_TASK_ALWAYS_EAGER = False
    queued = []
    from knowledge.versions.tasks import knowledge_snapshot_push

    monkeypatch.setattr(knowledge_snapshot_push, "apply_async", lambda **kw: queued.append(kw))
    monkeypatch.setattr(cache, "snapshot_store", lambda snapshot, **kw: False)
    v2 = knowledge_publish(actor=ops_user, reason="cache down")
    assert queued and queued[0]["args"] == [v2.number]
    monkeypatch.undo()
    assert knowledge_activation_sweep() == [2]


def test_discard_puts_the_tables_back_to_the_published_snapshot(ops_user, published):
    tshirts = Category.objects.get(name="Tshirts")
    sandals = Category.objects.get(name="Sandals", parent__name="Sandal")
    node_update(
        CATEGORIES,
        actor=ops_user,
        node=tshirts,
        expected_version=tshirts.version,
        name="Tees",
        description="",
        aliases=["T恤"],
    )
    category_move(
        actor=ops_user,
        category=sandals,
        new_parent=Category.objects.get(name="Apparel"),
        expected_version=sandals.version,
    )
    brand_create(actor=ops_user, name="Temporary")
    category_create(actor=ops_user, name="Gadgets")
    count = knowledge_discard(actor=ops_user, reason="oops")
    assert count == 4
    tshirts.refresh_from_db()
    sandals.refresh_from_db()
    assert tshirts.name == "Tshirts" and not tshirts.aliases.exists()
    assert sandals.path_label == "Footwear > Sandal > Sandals"
    assert not Category.objects.filter(name="Gadgets").exists()
    snap = snapshot_build_with_ids(version=0)[0]
    assert snap.find_brand("Temporary") is None
    assert not ChangeLog.objects.filter(status=ChangeLog.Status.PENDING).exists()


def test_an_earlier_version_can_be_viewed_and_restored_as_a_new_version(ops_user, published):
    brand_create(actor=ops_user, name="Nike")
    knowledge_publish(actor=ops_user, reason="add Nike")
    v3 = knowledge_version_restore(actor=ops_user, number=1, reason="Nike was a mistake")
    assert v3.number == 3
    assert KnowledgeSnapshot.from_dict(v3.snapshot).find_brand("Nike") is None
    assert cache.snapshot_version_current() == 3
    assert KnowledgeSnapshot.from_dict(v3.snapshot).has_category("Footwear > Sandal > Sandals")


def test_impact_preview_counts_label_changes_and_new_conflicts(ops_user, published):
    tshirts = Category.objects.get(name="Tshirts")
    puma = factories.brand("Puma")
    shirts = factories.category_path("Apparel", "Topwear", "Shirts")
    knowledge_publish(actor=ops_user, reason="shirts")
    for _ in range(3):
        factories.review_task(category=shirts, brand_obj=puma, title="Puma Men Blue Shirt")
    factories.review_task(category=tshirts, brand_obj=puma, title="Puma Men Black Tshirt")
    before = impact_preview(days=7)
    assert before.examined == 4 and before.affected == 0
    # Moving Shirts changes three labels; Puma stops selling Tshirts -> one new conflict.
    category_move(
        actor=ops_user,
        category=shirts,
        new_parent=Category.objects.get(name="Apparel"),
        expected_version=shirts.version,
    )
    brand_category_remove(actor=ops_user, brand=puma, category=tshirts)
    brand_category_add(actor=ops_user, brand=puma, category=Category.objects.get(name="Footwear"))
    # Evidence, not absence: Puma's record is evidence only when listings back it.
    BrandCategory.objects.filter(brand=puma).update(support=60)
    preview = impact_preview(days=7)
    assert preview.label_changed == 3
    assert preview.new_conflicts >= 1
    assert any("Puma" in " ".join(ex["effects"]) for ex in preview.examples)


def test_restore_undoes_renames_merges_of_aliases_and_relations_in_place(ops_user, published):
    puma = factories.brand("Puma")
    tshirts = Category.objects.get(name="Tshirts")
    node_update(
        BRANDS,
        actor=ops_user,
        node=puma,
        expected_version=puma.version,
        name="Puma AG",
        description="",
        aliases=["彪马", "PUMA"],
    )
    brand_category_remove(actor=ops_user, brand=puma, category=tshirts)
    node_update(
        CATEGORIES,
        actor=ops_user,
        node=tshirts,
        expected_version=tshirts.version,
        name="Tees",
        description="",
        aliases=["Tee"],
    )
    # A new node takes the old name's place: the restore moves it out of the way.
    category_create(actor=ops_user, name="Tshirts", parent=tshirts.parent)
    knowledge_discard(actor=ops_user, reason="undo")
    puma.refresh_from_db()
    tshirts.refresh_from_db()
    assert puma.name == "Puma" and not puma.aliases.exists()
    assert puma.categories.filter(pk=tshirts.pk).exists()
    assert tshirts.name == "Tshirts" and not tshirts.aliases.exists()
    assert Category.objects.filter(parent=tshirts.parent, name__iexact="tshirts").count() == 1
    assert (
        snapshot_build_with_ids(version=1)[0].to_dict()["categories"]
        == (KnowledgeSnapshot.from_dict(published.snapshot).to_dict()["categories"])
    )
