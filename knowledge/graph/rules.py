"""The rules every edit of the graph obeys: name limits, alias hygiene, unique names."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from django.db.models import QuerySet

from knowledge.changelog import KnowledgeError
from knowledge.graph.selectors import brand_by_folded_name
from knowledge.models import Brand, BrandAlias, Category

NAME_MAX = 120
BRAND_NAME_MAX = 200
ALIAS_MAX = 200
TERM_MAX = 200


def short(text: str, n: int = 40) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def clean_name(name: str, *, what: str, max_len: int) -> str:
    name = " ".join((name or "").split())
    if not name:
        raise KnowledgeError(f"The {what} name is empty.")
    if len(name) > max_len:
        raise KnowledgeError(f"The {what} name is {len(name)} characters long; the limit is {max_len}.")
    if what == "category" and ">" in name:
        raise KnowledgeError("A category name cannot contain '>': it separates the levels of a path.")
    return name


def aliases_parse(text: str) -> list[str]:
    """One alias per line (bulk edit textarea); blank lines dropped."""
    return [line.strip() for line in (text or "").splitlines() if line.strip()]


def clean_aliases(aliases: Iterable[str], *, own_name: str) -> list[str]:
    out: list[str] = []
    seen = {own_name.lower()}
    for raw in aliases:
        alias = " ".join(str(raw).split())
        if not alias:
            continue
        if len(alias) > ALIAS_MAX:
            raise KnowledgeError(
                f"The alias {short(alias)!r} is {len(alias)} characters long; the limit is {ALIAS_MAX}."
            )
        if alias.lower() in seen:
            continue
        seen.add(alias.lower())
        out.append(alias)
    return out


def check_brand_aliases_free(aliases: Sequence[str], *, brand: Brand | None) -> None:
    for alias in aliases:
        other_alias = (
            BrandAlias.objects.filter(alias__iexact=alias).exclude(brand=brand).select_related("brand")
        )
        hit = other_alias.first()
        if hit is not None:
            raise KnowledgeError(f"The alias {alias!r} already belongs to brand {hit.brand.name!r}.")
        named = _other_brands(brand).filter(name__iexact=alias).first()
        if named is not None:
            raise KnowledgeError(
                f"{alias!r} is the name of brand {named.name!r}; merge the two brands instead."
            )


def _other_brands(brand: Brand | None) -> QuerySet[Brand]:
    return Brand.objects.exclude(pk=brand.pk) if brand is not None else Brand.objects.all()


def check_brand_name_free(name: str, *, brand: Brand | None) -> None:
    other = _other_brands(brand).filter(name__iexact=name).first()
    if other is not None:
        raise KnowledgeError(f"A brand named {other.name!r} already exists.")
    alias = BrandAlias.objects.filter(alias__iexact=name).exclude(brand=brand).select_related("brand").first()
    if alias is not None:
        raise KnowledgeError(f"{name!r} is already an alias of brand {alias.brand.name!r}.")
    folded = brand_by_folded_name(name)
    if folded is not None and (brand is None or folded.pk != brand.pk):
        raise KnowledgeError(f"{name!r} is brand {folded.name!r} written with other accents or case.")


def check_sibling_free(name: str, *, parent: Category | None, exclude: Category | None) -> None:
    clash = Category.objects.filter(parent=parent, name__iexact=name)
    hit = (clash.exclude(pk=exclude.pk) if exclude is not None else clash).first()
    if hit is not None:
        where = parent.path_label if parent else "the top level"
        raise KnowledgeError(f"There is already a category {hit.name!r} under {where}; merge them instead.")


def descendant_ids(category: Category) -> set[int]:
    children: dict[int | None, list[int]] = {}
    for pk, parent_id in Category.objects.values_list("id", "parent_id"):
        children.setdefault(parent_id, []).append(pk)
    out: set[int] = set()
    stack = list(children.get(category.pk, ()))
    while stack:
        pk = stack.pop()
        if pk not in out:
            out.add(pk)
            stack.extend(children.get(pk, ()))
    return out
