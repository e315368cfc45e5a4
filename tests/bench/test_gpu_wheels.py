"""The GPU machine's wheels travel in carry folders of bounded size and come back whole (bench/gpu/wheels.py),
checked here on made-up files: nothing is downloaded or installed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench.gpu.wheels import assemble, plan_carries, split


def test_pieces_fit_their_folders_and_cover_every_byte() -> None:
    sizes = {"big.whl": 250, "mid.whl": 60, "small.whl": 7, "tiny.whl": 1}
    folders = plan_carries(sizes, limit=64)
    assert all(sum(length for _, _, length in f) <= 64 for f in folders)
    for name, size in sizes.items():
        pieces = sorted((off, length) for f in folders for n, off, length in f if n == name)
        assert sum(length for _, length in pieces) == size and pieces[0][0] == 0
    assert len(folders) == 6  # 250 needs four pieces; 60 + 1 + ... pack around them


def test_split_then_assemble_gives_the_wheels_back(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    wheels = {}
    for name, size in (("a-1.0-py3-none-any.whl", 1000), ("b-2.0-py3-none-any.whl", 130)):
        wheels[name] = raw / name
        wheels[name].write_bytes(os.urandom(size))
    house = tmp_path / "wheelhouse"
    folders = split(wheels, house, limit=256)
    assert all(sum(f.stat().st_size for f in d.iterdir() if f.suffix != ".json") <= 256 for d in folders)
    joined = {p.name: p.read_bytes() for p in assemble(house)}
    assert joined == {n: p.read_bytes() for n, p in wheels.items()}
    next(house.glob("c*/a-1.0-py3-none-any.whl.part01")).unlink()  # a folder that did not travel
    with pytest.raises(SystemExit, match="parts do not make the wheel"):
        assemble(house)
