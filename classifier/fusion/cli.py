"""Argument parsing for ``python -m classifier.fusion``; heavy imports happen inside the subcommands."""

from __future__ import annotations

import argparse
import sys
from typing import cast


def _cmd_snapshot(a: argparse.Namespace) -> int:
    from classifier.fusion.catalogue_snapshot import snapshot_from_catalogue

    snap = snapshot_from_catalogue(
        a.catalogue, splits=tuple(a.splits.split(",")) if a.splits else (), version=a.version
    )
    snap.save(a.out)
    print(
        f"snapshot v{snap.version}: {len(snap.categories)} categories, {len(snap.leaves())} leaves, "
        f"{len(snap.brands)} brands, {len(snap.attribute_rules)} rules -> {a.out} (checksum {snap.checksum()})"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m classifier.fusion", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("snapshot", help="build a knowledge snapshot JSON from a catalogue CSV")
    s.add_argument("--catalogue", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--splits", default="train,val", help="comma-separated splits to read ('' = all rows)")
    s.add_argument("--version", type=int, default=1)
    s.set_defaults(func=_cmd_snapshot)
    try:
        from classifier.fusion import cli_model

        cli_model.add_subcommands(sub)
    except ImportError:  # model subcommands not available (partial checkout)
        pass
    return p


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    return cast(int, a.func(a))  # every subcommand returns its exit status


if __name__ == "__main__":
    sys.exit(main())
