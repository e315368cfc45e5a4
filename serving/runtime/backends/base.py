"""The one inference interface everything above the backends talks to (DESIGN.md "Contracts").

Arrays go in and come out in the SPEC's shapes (serving/contracts/model_specs.py): the batch axis first, then
the spec's dims; a tensor with dims () is [batch]. A backend whose wire format differs (Triton sends
such a tensor as [batch, 1] with a reshape) converts at its edge, so callers never see it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from serving.contracts.errors import ModelNotLoaded


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: str  # numpy dtype name ("float32", "int64", ...)
    dims: tuple[int, ...]  # without the batch axis, as the model sees it (-1 = dynamic)
    wire_dims: tuple[int, ...] | None = None  # config.pbtxt dims when a reshape differs from `dims`

    @property
    def dynamic_axes(self) -> tuple[int, ...]:
        """Axes of the batched array (batch = 0) whose length varies from request to request."""
        return tuple(i + 1 for i, d in enumerate(self.dims) if d == -1)


@dataclass(frozen=True)
class ModelInfo:
    """One loaded model version: what /v1/models shows and what the batcher and warm-up read."""

    name: str
    version: int
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    max_batch_size: int  # 0 = the model takes no batch axis (never batched)
    max_queue_delay_us: int = 0
    preferred_batch_sizes: tuple[int, ...] = ()
    platform: str = "onnxruntime_onnx"
    sha256: str | None = None
    path: Path | None = None
    providers: tuple[str, ...] = ()
    # Longest length seen per dynamic input axis in the config's warm-up requests, which export writes at
    # the model's maximum history/sequence length: {input name: length}. Empty when unknown.
    max_lengths: Mapping[str, int] = field(default_factory=dict)
    config: Any = field(default=None, compare=False, repr=False)  # the parsed model_config_pb2.ModelConfig

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]

    def input(self, name: str) -> TensorInfo | None:
        return next((t for t in self.inputs if t.name == name), None)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "platform": self.platform,
            "sha256": self.sha256,
            "max_batch_size": self.max_batch_size,
            "max_queue_delay_us": self.max_queue_delay_us,
            "providers": list(self.providers),
            "inputs": [{"name": t.name, "dtype": t.dtype, "dims": list(t.dims)} for t in self.inputs],
            "outputs": [{"name": t.name, "dtype": t.dtype, "dims": list(t.dims)} for t in self.outputs],
        }


@dataclass(frozen=True)
class ReloadResult:
    changed: dict[str, tuple[int | None, int]]  # model -> (old version or None when new, new version)
    unchanged: list[str]


class InferenceBackend(ABC):
    """Async model execution. Implementations: embedded ONNX Runtime, Triton (embedded.py, triton.py)."""

    kind: ClassVar[str] = "abstract"

    @abstractmethod
    async def load(self, models: Sequence[str] | None = None, pins: Mapping[str, int] | None = None) -> None:
        """Load `models` (default: all the backend can serve), each at its newest version or `pins[model]`."""

    @abstractmethod
    async def infer(self, model: str, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one batch. Raises ModelNotLoaded, or Unavailable when the backend cannot answer."""

    @abstractmethod
    def models(self) -> dict[str, ModelInfo]:
        """The versions being served now."""

    @abstractmethod
    async def ready(self) -> bool:
        """True when every loaded model can answer (Triton: the server and each model say so)."""

    @abstractmethod
    async def reload(self, models: Sequence[str] | None = None, pins: Mapping[str, int] | None = None) -> ReloadResult:
        """Load new versions beside the serving ones, then swap atomically; in-flight calls finish on the old."""

    @abstractmethod
    async def close(self) -> None:
        """Release sessions / connections; called after requests have drained."""

    async def warmup(self, model: str) -> float:
        """Run the model's warm-up requests; returns seconds spent. Default: nothing (Triton warms itself)."""
        return 0.0

    def info(self, model: str) -> ModelInfo:
        try:
            return self.models()[model]
        except KeyError:
            raise ModelNotLoaded(model) from None
