"""`python -m training.data behavior|sales [options] --out DIR`: generate a seeded data set.

Each generator module owns its options (`python -m training.data behavior --help`).
"""

from __future__ import annotations

import importlib
import sys

GENERATORS = {"behavior": "training.data.behavior", "sales": "training.data.sales"}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in GENERATORS:
        print(f"usage: python -m training.data {{{','.join(GENERATORS)}}} [--help]", file=sys.stderr)
        return 2
    module = importlib.import_module(GENERATORS[argv[0]])
    return int(module.main(argv[1:]) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
