"""The `tritonserver` that ships in the nvidia-pytriton wheel, and what its Python backend needs to run here.

The wheel keeps one Python-backend stub per Python version under `python_backend_stubs/<major.minor>/`, while
the backend looks for `triton_python_backend_stub` inside its own folder. So we assemble a backend directory
(links to the backend library, its utils module and the stub for THIS interpreter) and point
`--backend-directory` at it; the wheel itself is never modified.

The stub embeds libpython. Under pyenv the loader would otherwise find another libpython (or none), so
LD_LIBRARY_PATH starts with this interpreter's LIBDIR. The stub's embedded interpreter derives its prefix from
the `python3` it finds on PATH, so this interpreter's bin folder goes first there: the stub then sees the same
virtualenv (numpy, onnxruntime, tokenizers) as the process that started it.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

STUB = "triton_python_backend_stub"
BACKEND_FILES = ("libtriton_python.so", "triton_python_backend_utils.py")


class TritonNotFound(RuntimeError):
    """No usable tritonserver binary (nvidia-pytriton missing, or no stub for this Python)."""


@dataclass(frozen=True)
class TritonDist:
    binary: Path
    python_backend: Path  # the wheel's backends/python folder
    stub: Path  # the stub built for this interpreter's Python version

    @property
    def libs(self) -> Path:
        """The wheel's bundled shared libraries (auditwheel's folder next to the package)."""
        return self.binary.parents[3] / "nvidia_pytriton.libs"


def find_dist() -> TritonDist:
    """Locate the pip `tritonserver` without importing pytriton (its import pulls in far more than we need)."""
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise TritonNotFound("nvidia-pytriton is not installed: `pip install nvidia-pytriton` (the dev extra has it)")
    root = Path(next(iter(spec.submodule_search_locations))) / "tritonserver"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    dist = TritonDist(
        binary=root / "bin" / "tritonserver",
        python_backend=root / "backends" / "python",
        stub=root / "python_backend_stubs" / version / STUB,
    )
    for path in (dist.binary, *(dist.python_backend / f for f in BACKEND_FILES)):
        if not path.is_file():
            raise TritonNotFound(f"{path} is missing: the nvidia-pytriton install looks incomplete")
    if not dist.stub.is_file():
        have = sorted(p.name for p in dist.stub.parents[1].iterdir()) if dist.stub.parents[1].is_dir() else []
        raise TritonNotFound(f"no Python backend stub for Python {version} in nvidia-pytriton (it has {have})")
    return dist


def prepare_backends(dist: TritonDist, folder: Path) -> Path:
    """`folder/python/` with the backend library, utils and the right stub; returns `folder` for --backend-directory."""
    python = folder / "python"
    python.mkdir(parents=True, exist_ok=True)
    wanted = {name: dist.python_backend / name for name in BACKEND_FILES} | {STUB: dist.stub}
    for name, target in wanted.items():
        link = python / name
        if link.is_symlink() and link.resolve() == target.resolve():
            continue
        tmp = python / f".{name}.{os.getpid()}"  # link then rename: two launchers sharing the folder never race
        tmp.unlink(missing_ok=True)
        try:
            tmp.symlink_to(target.resolve())
        except OSError:
            shutil.copy2(target, tmp)
        os.replace(tmp, link)
    return folder


def server_env(dist: TritonDist, base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for tritonserver and its stubs (see the module docstring for why each entry is there)."""
    env = dict(os.environ if base is None else base)
    libdir = sysconfig.get_config_var("LIBDIR") or str(Path(sys.base_prefix) / "lib")
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (libdir, str(dist.libs), env.get("LD_LIBRARY_PATH", "")) if p)
    env["PATH"] = os.pathsep.join(p for p in (str(Path(sys.executable).parent), env.get("PATH", "")) if p)
    env.pop("PYTHONHOME", None)  # a stray PYTHONHOME would point the stub at another interpreter's stdlib
    return env
