"""Writes to the category tree: create, edit, move, merge, delete; attribute rules; noise terms.

Each edit is logged (`knowledge.changelog`) and stays pending until a publish. Rows of other apps
that name a category (listings, predictions, review rows) follow a merge through
`knowledge.ports.references()`.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db import transaction
from django.db.models import F

from knowledge.changelog import KnowledgeError, change_record, lock_at_version, merge_record, versioned_update
from knowledge.graph.nodes import relation_fold
from knowledge.graph.rules import (
    NAME_MAX,
    TERM_MAX,
    check_sibling_free,
    clean_aliases,
    clean_name,
    descendant_ids,
)
from knowledge.graph.selectors import category_row
from knowledge.models import BrandCategory, Category, CategoryAlias, CategoryAttribute, NoiseTerm, Suggestion
from knowledge.ports import Actor, CategoryUse, references


@transaction.atomic
def category_create(
    *,
    actor: Actor,
    name: str,
    parent: Category | None = None,
    description: str = "",
    aliases: Iterable[str] = (),
    reason: str = "",
) -> Category:
    name = clean_name(name, what="category", max_len=NAME_MAX)
    check_sibling_free(name, parent=parent, exclude=None)
    clean = clean_aliases(aliases, own_name=name)
    category = Category.objects.create(name=name, parent=parent, description=description.strip())
    CategoryAlias.objects.bulk_create([CategoryAlias(category=category, alias=a) for a in clean])
    change_record(actor=actor, action="create", obj=category, reason=reason, after=category_row(category))
    return category


@transaction.atomic
def category_move(
    *,
    actor: Actor,
    category: Category,
    new_parent: Category | None,
    expected_version: int | None,
    reason: str = "",
) -> Category:
    """Put a node (with its subtree) under another parent; refuses cycles and name clashes."""

    def change(node: Category) -> None:
        parent = Category.objects.get(pk=new_parent.pk) if new_parent is not None else None
        if parent is not None and (parent.pk == node.pk or parent.pk in descendant_ids(node)):
            raise KnowledgeError(
                f"Cannot move {node.path_label} under {parent.path_label}: "
                "that is inside its own subtree (the tree would loop)."
            )
        if (parent.pk if parent else None) == node.parent_id:
            raise KnowledgeError(f"{node.path_label} is already there.")
        check_sibling_free(node.name, parent=parent, exclude=node)
        node.parent = parent
        node.save(update_fields=["parent", "updated_at"])

    return versioned_update(
        Category,
        category.pk,
        expected_version=expected_version,
        actor=actor,
        action="move",
        reason=reason,
        row=category_row,
        change=change,
    )


def category_usage(*, category: Category) -> dict[str, int]:
    """How many rows use the node (listings, predictions, decisions) and how many children it has."""
    use: CategoryUse = references().category_use(category_id=category.pk)
    return {
        "listings": use.listings,
        "predictions": use.predictions,
        "decisions": use.decisions,
        "children": category.children.count(),
    }


@transaction.atomic
def category_merge(*, actor: Actor, source: Category, target: Category, reason: str = "") -> Category:
    """Fold `source` into `target`: its listings, predictions, review rows, aliases, relations,
    attributes and children follow; its name becomes an alias of `target`; `source` is deleted."""
    source = Category.objects.select_for_update().get(pk=source.pk)
    target = Category.objects.select_for_update().get(pk=target.pk)
    if source.pk == target.pk:
        raise KnowledgeError("Pick two different categories to merge.")
    if target.pk in descendant_ids(source):
        raise KnowledgeError(f"Cannot merge {source.path_label} into its own descendant {target.path_label}.")
    before = {"source": category_row(source), "target": category_row(target)}
    # The ids that move are recorded so that restoring a version before the merge puts them back.
    moved, moved_ids = references().category_repoint(source_id=source.pk, target_id=target.pk)
    # Children: a same-named child of the target absorbs the source's child (recursively).
    for child in list(source.children.all()):
        twin = target.children.filter(name__iexact=child.name).first()
        if twin is not None:
            category_merge(
                actor=actor, source=child, target=twin, reason=f"merged with parent {source.path_label}"
            )
        else:
            Category.objects.filter(pk=child.pk).update(parent=target, version=F("version") + 1)
    target_aliases = {a.lower() for a in target.aliases.values_list("alias", flat=True)} | {
        target.name.lower()
    }
    for alias in list(source.aliases.all()):
        if alias.alias.lower() in target_aliases:
            alias.delete()
        else:
            target_aliases.add(alias.alias.lower())
            CategoryAlias.objects.filter(pk=alias.pk).update(category=target)
    if source.name.lower() not in target_aliases:
        CategoryAlias.objects.create(category=target, alias=source.name)
    # Relations follow with their evidence: the support of a relation on both adds up.
    for bc in BrandCategory.objects.filter(category=source):
        relation_fold(brand_id=bc.brand_id, category_id=target.pk, support=bc.support, source=bc.source)
    BrandCategory.objects.filter(category=source).delete()
    target_attrs = {n.lower() for n in target.attributes.values_list("name", flat=True)}
    for attr in list(source.attributes.all()):
        if attr.name.lower() not in target_attrs:
            CategoryAttribute.objects.filter(pk=attr.pk).update(category=target)
    Suggestion.objects.filter(category=source).delete()  # re-derived against the target on refresh
    source_label = source.path_label
    source.delete()
    merge_record(
        actor=actor,
        target=target,
        row=category_row,
        reason=reason,
        before=before,
        folded={"merged_away": source_label, "moved": moved, "moved_ids": moved_ids},
    )
    return target


@transaction.atomic
def category_delete(
    *, actor: Actor, category: Category, expected_version: int | None, reason: str = ""
) -> None:
    """Delete an unused node; a used one is refused with the counts (merge it instead)."""
    category = lock_at_version(Category, category.pk, expected_version)
    usage = category_usage(category=category)
    if usage["children"]:
        raise KnowledgeError(
            f"{category.path_label} has {usage['children']} sub-categories; move or merge them first."
        )
    used = usage["listings"] + usage["decisions"]
    if used:
        raise KnowledgeError(
            f"{usage['listings']} listings and {usage['decisions']} review decisions use "
            f"{category.path_label}; merge it into another category instead of deleting it."
        )
    before = category_row(category)
    pk, label = category.pk, category.path_label
    category.delete()
    change_record(
        actor=actor,
        action="delete",
        object_type="category",
        object_id=str(pk),
        label=label,
        reason=reason,
        before=before,
    )


@transaction.atomic
def attribute_set(
    *,
    actor: Actor,
    category: Category,
    name: str,
    allowed_values: Iterable[str] = (),
    required: bool = False,
    excluded: bool = False,
    reason: str = "",
) -> CategoryAttribute:
    """Add or replace one attribute rule of a category (allowed values; requires / excludes)."""
    name = clean_name(name, what="attribute", max_len=100)
    if required and excluded:
        raise KnowledgeError("An attribute cannot be both required and excluded.")
    values = clean_aliases(allowed_values, own_name="")
    existing = CategoryAttribute.objects.filter(category=category, name__iexact=name).first()
    before = (
        {
            "name": existing.name,
            "allowed_values": existing.allowed_values,
            "required": existing.required,
            "excluded": existing.excluded,
        }
        if existing
        else {}
    )
    fields: dict[str, object] = {
        "category": category,
        "name": name,
        "allowed_values": values,
        "required": required,
        "excluded": excluded,
    }
    if existing is not None:
        attr, _ = CategoryAttribute.objects.update_or_create(pk=existing.pk, defaults=fields)
    else:
        attr = CategoryAttribute.objects.create(**fields)
    after = {"name": name, "allowed_values": values, "required": required, "excluded": excluded}
    change_record(actor=actor, action="attribute", obj=category, reason=reason, before=before, after=after)
    return attr


@transaction.atomic
def attribute_delete(*, actor: Actor, attribute: CategoryAttribute, reason: str = "") -> None:
    before = {"name": attribute.name, "allowed_values": attribute.allowed_values}
    category = attribute.category
    attribute.delete()
    change_record(actor=actor, action="attribute_delete", obj=category, reason=reason, before=before)


@transaction.atomic
def noise_term_add(*, actor: Actor, term: str, weight: float = 0.1, reason: str = "") -> NoiseTerm:
    term = " ".join((term or "").split())
    if not term:
        raise KnowledgeError("The noise term is empty.")
    if len(term) > TERM_MAX:
        raise KnowledgeError(f"The noise term is {len(term)} characters long; the limit is {TERM_MAX}.")
    if not 0.0 <= weight <= 1.0:
        raise KnowledgeError("The weight must be between 0 and 1.")
    if NoiseTerm.objects.filter(term__iexact=term).exists():
        raise KnowledgeError(f"{term!r} is already a noise term.")
    row = NoiseTerm.objects.create(term=term, weight=weight)
    _noise_record(actor, "noise_add", row.pk, term, reason, after={"term": term, "weight": weight})
    return row


@transaction.atomic
def noise_term_delete(*, actor: Actor, term: NoiseTerm, reason: str = "") -> None:
    before = {"term": term.term, "weight": term.weight}
    pk = term.pk
    term.delete()
    _noise_record(actor, "noise_delete", pk, term.term, reason, before=before)


def _noise_record(
    actor: Actor,
    action: str,
    pk: int,
    term: str,
    reason: str,
    *,
    before: dict[str, object] | None = None,
    after: dict[str, object] | None = None,
) -> None:
    change_record(
        actor=actor,
        action=action,
        object_type="noise",
        object_id=str(pk),
        label=term,
        reason=reason,
        before=before,
        after=after,
    )
