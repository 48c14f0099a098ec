"""Command line: ``python -m classifier.fusion {snapshot,train,predict,evaluate} ...``."""

from classifier.fusion.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
