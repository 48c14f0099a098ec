"""Two ops saving the same node at the same moment: exactly one wins, the other is told who won."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from knowledge.changelog import StaleEdit
from knowledge.graph.nodes import CATEGORIES, node_update
from knowledge.models import Category, ChangeLog
from tests import factories

pytestmark = pytest.mark.integration


def test_simultaneous_edits_of_one_node_let_exactly_one_through(transactional_db, ops_user, admin_user):
    cat = factories.category_path("Apparel", "Topwear", "Tshirts")
    opened_at = cat.version
    barrier = threading.Barrier(2)
    outcomes: dict[str, str] = {}

    def save(user, name: str) -> None:
        try:
            barrier.wait(timeout=10)
            node_update(
                CATEGORIES, actor=user, node=cat, expected_version=opened_at, name=name, description=""
            )
            outcomes[user.username] = "saved"
        except StaleEdit as exc:
            outcomes[user.username] = str(exc)
        finally:
            connection.close()

    threads = [
        threading.Thread(target=save, args=(ops_user, "Tees")),
        threading.Thread(target=save, args=(admin_user, "T-Shirts")),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(v == "saved" for v in outcomes.values()) == [False, True], outcomes
    winner = next(u for u, v in outcomes.items() if v == "saved")
    loser_message = next(v for v in outcomes.values() if v != "saved")
    assert f"changed by {winner}" in loser_message
    cat.refresh_from_db()
    assert cat.version == opened_at + 1
    assert cat.name == {"otto": "Tees", "ada": "T-Shirts"}[winner]
    assert ChangeLog.objects.filter(object_id=str(cat.pk), action="update").count() == 1
    assert Category.objects.filter(parent=cat.parent).count() == 1
