"""Server-side PNG plots for a model version's page (matplotlib, Agg backend; no JavaScript, no CDN).

Each function takes the figures already stored on the version (the gate's per-item frozen-set answers,
see `classifier.registry.evaluation._per_item`) and returns PNG bytes; the views only serve them.
"""

from __future__ import annotations

import io
from collections import Counter
from typing import Any

SEP = " > "


def _figure(width: float, height: float):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(width, height), dpi=100)
    return plt, fig, ax


def _png(plt, fig) -> bytes:
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def short_category_names(labels: list[str]) -> dict[str, str]:
    """Each path's shortest tail that no other path in `labels` shares: the leaf name where it is unique,
    else as many parents as it takes (Men > Topwear > Tshirts vs Women > Topwear > Tshirts)."""
    parts = {label: label.split(SEP) for label in labels}
    out = {}
    for label, path in parts.items():
        for k in range(1, len(path) + 1):
            tail = path[-k:]
            if sum(1 for other in parts.values() if other[-k:] == tail) == 1:
                break
        out[label] = SEP.join(tail)
    return out


def confusion_matrix_data(items: list[list], *, top: int = 20) -> dict[str, Any]:
    """Row-normalised confusion over the `top` most frequent true leaves (+ "other" for the rest)."""
    truth_counts = Counter(row[0] for row in items)
    labels = [label for label, _ in truth_counts.most_common(top)]
    index = {label: i for i, label in enumerate(labels)}
    other = len(labels)
    size = len(labels) + 1
    counts = [[0] * size for _ in range(size)]
    for truth, pred, *_ in items:
        counts[index.get(truth, other)][index.get(pred, other)] += 1
    return {"labels": labels, "counts": counts, "n": len(items)}


def confusion_png(items: list[list], *, title: str) -> bytes:
    data = confusion_matrix_data(items)
    names = short_category_names(data["labels"])
    ticks = [names[label] for label in data["labels"]] + ["(other)"]
    rows = [
        [c / max(1, sum(row)) for c in row]
        for row in data["counts"]  # row-normalised: each true class sums to 1
    ]
    plt, fig, ax = _figure(7.5, 6.5)
    image = ax.imshow(rows, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(ticks)), ticks, rotation=90, fontsize=7)
    ax.set_yticks(range(len(ticks)), ticks, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=10)
    for i, row in enumerate(data["counts"]):
        for j, value in enumerate(row):
            if value:
                ax.text(j, i, str(value), ha="center", va="center", fontsize=6,
                        color="white" if rows[i][j] > 0.5 else "#1d2330")  # fmt: skip
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    return _png(plt, fig)


def risk_coverage_data(items: list[list]) -> dict[str, Any]:
    """Coverage (share accepted, most confident first) against risk (error rate among them), and the
    point the version's review threshold actually operates at (items not routed to review)."""
    ranked = sorted(items, key=lambda row: -float(row[2]))
    coverage, risk, wrong = [], [], 0
    for k, row in enumerate(ranked, start=1):
        wrong += int(row[0] != row[1])
        coverage.append(k / len(ranked))
        risk.append(wrong / k)
    auto = [row for row in items if len(row) > 3 and not row[3]]
    point = None
    if items and auto:
        point = (len(auto) / len(items), sum(int(r[0] != r[1]) for r in auto) / len(auto))
    return {"coverage": coverage, "risk": risk, "operating_point": point}


def risk_coverage_png(items: list[list], *, title: str, threshold: float | None) -> bytes:
    data = risk_coverage_data(items)
    plt, fig, ax = _figure(5.5, 4.0)
    ax.plot(data["coverage"], [100 * r for r in data["risk"]], color="#2f6fed", lw=2)
    if data["operating_point"]:
        cov, risk = data["operating_point"]
        label = f"auto-accepted at threshold {threshold:.3f}" if threshold is not None else "auto-accepted"
        ax.plot(
            [cov],
            [100 * risk],
            "o",
            color="#c0262d",
            label=f"{label}: {100 * cov:.0f}% at {100 * risk:.1f}% error",
        )
        ax.legend(fontsize=8, loc="upper left")
    ax.set_xlabel("coverage (share accepted, most confident first)")
    ax.set_ylabel("risk (% wrong among accepted)")
    ax.set_xlim(0, 1)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.set_title(title, fontsize=10)
    return _png(plt, fig)


def history_png(rows: list[dict[str, Any]], *, current: str, title: str) -> bytes:
    """Accuracy per level for each version evaluated on the same frozen set, oldest first."""
    plt, fig, ax = _figure(7.0, 3.6)
    names = [row["name"] for row in rows]
    xs = list(range(len(rows)))
    for key, label, colour in (
        ("master", "master", "#12805c"),
        ("sub", "sub", "#f79009"),
        ("article", "leaf", "#2f6fed"),
    ):
        ax.plot(xs, [100 * row["accuracy"].get(key, 0.0) for row in rows], "o-", label=label, color=colour)
    if current in names:
        ax.axvline(names.index(current), color="#c0262d", lw=1, ls="--", label="this version")
    for x, row in zip(xs, rows, strict=True):
        if row.get("promoted"):
            ax.annotate("in production", (x, 100 * row["accuracy"].get("article", 0.0)), fontsize=7,
                        textcoords="offset points", xytext=(0, 8), ha="center")  # fmt: skip
    ax.set_xticks(xs, names, rotation=20, fontsize=7, ha="right")
    ax.set_ylabel("accuracy on the frozen set (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    ax.margins(x=0.08, y=0.15)  # room for the "in production" note above its point
    ax.set_title(title, fontsize=10)
    return _png(plt, fig)
