"""Building a :class:`KnowledgeSnapshot` from a catalogue CSV: categories from the rows' paths, brands
mined from the titles' first words, audience rules, and (optionally) merges of duplicate categories."""

from __future__ import annotations

import csv
import json
import re
from collections import Counter, defaultdict
from pathlib import Path

from classifier.fusion.knowledge import (
    DEFAULT_NOISE_TERMS,
    PATH_SEP,
    AttributeRule,
    BrandEntry,
    CategoryNode,
    KnowledgeSnapshot,
    brand_words,
)

GENDER_WORDS = ("men", "women", "boys", "girls", "unisex")


def brand_prefix(title: str) -> str | None:
    words = title.split()
    for i, w in enumerate(words):
        if w.lower().strip(",.-") in GENDER_WORDS:
            return " ".join(words[:i]) if i > 0 else None
    return None


def _slug(s: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", s.lower()).strip("-")


def _leaf_of(r: dict[str, str]) -> str:
    return PATH_SEP.join([r["master_category"], r["sub_category"], r["article_type"]])


# A first word must start this many titles (that have no gender word) to be mined as a brand.
MIN_BARE_BRAND_ROWS = 3


def _outweighs(
    host: str,
    guest: str,
    children: dict[str | None, list[str]],
    cats: dict[str, CategoryNode],
    counts: Counter[str],
) -> bool:
    """Every leaf of ``guest`` has at least as many rows under ``host`` (the usual place for it)."""
    host_rows = {cats[c].name.lower(): counts[c] for c in children.get(host, [])}
    return all(counts[c] <= host_rows.get(cats[c].name.lower(), 0) for c in children.get(guest, []))


def _category_merges(rows: list[dict[str, str]], cats: dict[str, CategoryNode]) -> list[tuple[str, str, str]]:
    """(from id, into id, why) for categories that mean one thing under two names.

    - the same leaf name under two parents where one placement is a stray (at most 5% of the
      other's rows and at most 10 rows): "Footwear > Shoes > Sandals" (2) into
      "Footwear > Sandal > Sandals" (191);
    - a sub-category whose leaves all exist, each with at least as many rows, under a sibling
      ("Personal Care > Perfumes" {Perfume and Body Mist} into "Personal Care > Fragrance").
    """
    counts = Counter(_leaf_of(r) for r in rows)
    children: dict[str | None, list[str]] = defaultdict(list)
    for c in cats.values():
        children[c.parent_id].append(c.id)
    merges: list[tuple[str, str, str]] = []
    merged: set[str] = set()
    # siblings first: merging a whole sub-category also carries its leaves
    for parent_id, subs in sorted(children.items(), key=lambda kv: str(kv[0])):
        if parent_id is None or cats[parent_id].parent_id is not None:
            continue  # only sub-categories (children of a master) are compared
        names = {s: {cats[c].name.lower() for c in children.get(s, [])} for s in subs}
        size = {s: sum(counts[c] for c in children.get(s, [])) for s in subs}
        for a in sorted(subs, key=lambda x: (size[x], x)):
            if a in merged or not names[a]:
                continue
            hosts = [
                b
                for b in subs
                if b != a
                and b not in merged
                and names[a] <= names[b]
                and _outweighs(b, a, children, cats, counts)
            ]
            if hosts:
                b = max(hosts, key=lambda x: (size[x], x))
                merges.append((a, b, f"every type under {cats[a].name} also sits under {cats[b].name}"))
                merged.add(a)
                for leaf in children.get(a, []):
                    twin = next(c for c in children[b] if cats[c].name.lower() == cats[leaf].name.lower())
                    merges.append((leaf, twin, f"merged with its parent {cats[a].name}"))
                    merged.add(leaf)
    by_name: dict[str, list[str]] = defaultdict(list)
    for c in cats.values():
        if not children.get(c.id) and c.id not in merged:
            by_name[c.name.lower()].append(c.id)
    for ids in by_name.values():
        if len(ids) < 2:
            continue
        main = max(ids, key=lambda x: (counts[x], x))
        for other in ids:
            if other != main and counts[other] <= min(10, 0.05 * counts[main]):
                merges.append(
                    (
                        other,
                        main,
                        f"{counts[other]} rows against {counts[main]}: a stray placement of the same type",
                    )
                )
    return merges


def snapshot_from_catalogue(
    csv_path: str | Path,
    *,
    splits: tuple[str, ...] = ("train", "val"),
    version: int = 1,
    min_rule_rows: int = 20,
    merge_duplicates: bool = False,
) -> KnowledgeSnapshot:
    """Build a snapshot from a catalogue CSV (``id,title,master_category,sub_category,article_type,...``).

    Categories come from the rows' paths. Brands are the title's first words: the prefix before
    the gender word (Men/Women/Boys/Girls/Unisex), else the longest known brand at the start
    (whole words, case- and accent-folded), else a first word that starts at least
    ``MIN_BARE_BRAND_ROWS`` titles ("Lakme Absolute Lip Color"). Spellings are merged
    case-insensitively (the most frequent is the name, the others aliases). A brand sells the leaf
    categories of its rows, each relation with its support (the number of rows behind it).
    Audience rules (allowed gender words) are mined for leaves with at least ``min_rule_rows`` rows.

    With ``merge_duplicates`` categories that mean one thing under two names are merged (see
    `_category_merges`); every merge is listed in ``meta["merged"]`` (JSON ``{from: into}``) and
    ``meta["merge_report"]``, and the merged-away name becomes an alias of the target.
    """
    with open(csv_path, newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if not splits or r.get("split", "") in splits]
    cats: dict[str, CategoryNode] = {}
    for r in rows:
        parent = None
        names = [r["master_category"], r["sub_category"], r["article_type"]]
        for depth in range(3):
            cid = PATH_SEP.join(names[: depth + 1])
            if cid not in cats:
                cats[cid] = CategoryNode(cid, names[depth], parent)
            parent = cid
    spellings: dict[tuple[str, ...], Counter[str]] = defaultdict(Counter)
    for r in rows:
        p = brand_prefix(r["title"])
        if p and brand_words(p):
            spellings[brand_words(p)][p] += 1
    # titles without a gender word: the longest known brand at the start, else a frequent first word
    bare_first: dict[tuple[str, ...], Counter[str]] = defaultdict(Counter)
    max_len = max((len(k) for k in spellings), default=1)
    type_words = {brand_words(c.name) for c in cats.values()}
    for r in rows:
        if brand_prefix(r["title"]):
            continue
        words = brand_words(r["title"])
        if any(words[:n] in spellings for n in range(min(max_len, len(words)), 0, -1)):
            continue
        first = r["title"].split()[0] if r["title"].split() else ""
        key = brand_words(first)
        if key and key not in type_words and first[:1].isalpha() and key[0] not in GENDER_WORDS:
            bare_first[key][first] += 1
    for key, cnt in bare_first.items():
        if sum(cnt.values()) >= MIN_BARE_BRAND_ROWS:
            spellings[key].update(cnt)
    max_len = max((len(k) for k in spellings), default=1)
    brand_cats: dict[tuple[str, ...], Counter[str]] = defaultdict(Counter)
    audience: dict[str, Counter[str]] = defaultdict(Counter)
    for r in rows:
        leaf = _leaf_of(r)
        words = brand_words(r["title"])
        # longest first, whole words: "United Colors of Benetton" wins over "United"
        for n in range(min(max_len, len(words)), 0, -1):
            if words[:n] in spellings:
                brand_cats[words[:n]][leaf] += 1
                break
        g = (r.get("gender") or "").strip()
        if g and g != "NA":
            audience[leaf][g] += 1
    merges = _category_merges(rows, cats) if merge_duplicates else []
    into = {a: b for a, b, _ in merges}

    def final(cid: str) -> str:
        seen = set()
        while cid in into and cid not in seen:
            seen.add(cid)
            cid = into[cid]
        return cid

    if merges:
        extra_aliases: dict[str, list[str]] = defaultdict(list)
        for a, _b, _why in merges:
            target = final(a)
            if cats[a].name.lower() != cats[target].name.lower():
                extra_aliases[target].append(cats[a].name)
        cats = {
            cid: CategoryNode(
                cid,
                c.name,
                c.parent_id,
                tuple(dict.fromkeys((*c.aliases, *extra_aliases.get(cid, ())))),
                c.description,
            )
            for cid, c in cats.items()
            if cid not in into
        }
        for counter in brand_cats.values():
            for leaf in [k for k in counter if k in into]:
                counter[final(leaf)] += counter.pop(leaf)
        merged_audience: dict[str, Counter[str]] = defaultdict(Counter)
        for leaf, cnt in audience.items():
            merged_audience[final(leaf)].update(cnt)
        audience = merged_audience
    brands = []
    for k in sorted(spellings):
        name = spellings[k].most_common(1)[0][0]
        aliases = tuple(sorted(s for s in spellings[k] if s != name))
        sells = sorted(brand_cats[k])
        brands.append(
            BrandEntry(
                _slug(name) or "-".join(k),
                name,
                aliases,
                tuple(sells),
                tuple(int(brand_cats[k][c]) for c in sells),
            )
        )
    rules = []
    for leaf, cnt in sorted(audience.items()):
        if sum(cnt.values()) >= min_rule_rows:
            rules.append(AttributeRule(leaf, "audience", tuple(sorted(cnt))))
    meta = [("source", Path(csv_path).name), ("splits", ",".join(splits))]
    if merges:
        meta.append(("merged", json.dumps({a: final(a) for a, _, _ in merges}, sort_keys=True)))
        meta.append(("merge_report", json.dumps([[a, final(a), why] for a, _, why in merges])))
    return KnowledgeSnapshot(
        version=version,
        categories=tuple(sorted(cats.values(), key=lambda c: c.id)),
        brands=tuple(brands),
        attribute_rules=tuple(rules),
        noise_terms=DEFAULT_NOISE_TERMS,
        meta=tuple(meta),
    )
