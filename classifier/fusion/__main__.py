"""Command line: ``python -m classifier.fusion {snapshot,train,predict,evaluate} ...``."""

import os

# on a shared CPU, spinning OpenMP workers thrash (10x slower steps): let idle threads sleep.
# Must be set before torch is imported, which the subcommands do lazily.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from classifier.fusion.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
