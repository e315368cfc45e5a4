"""Export specs: the one description of each served model's tensors (DESIGN.md "Contracts").

Data, not code paths: export (ONNX names, dynamic axes, parity), config.pbtxt writing, tests, Triton
warm-up and the gateway's input building all read these. numpy only, so serving can import it.

Dims: -1 = dynamic. The batch dimension is NOT listed in `dims` (Triton's convention with
max_batch_size > 0); every tensor here is batched along a leading axis.
Sizes that depend on a trained model (history length, number of labels...) are read from the
checkpoint's config by `ModelSpec.resolve(config)`, which fills named dims such as "max_hist".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

import numpy as np

# numpy dtype name -> Triton config dtype / ONNX element type name.
TRITON_DTYPES = {
    "float32": "TYPE_FP32",
    "float16": "TYPE_FP16",
    "int64": "TYPE_INT64",
    "int32": "TYPE_INT32",
    "bool": "TYPE_BOOL",
    "object": "TYPE_STRING",
}


@dataclass(frozen=True)
class TensorSpec:
    name: str  # chosen, never generated: "hist_item_ids", not "input.1"
    dtype: str  # numpy dtype name, a key of TRITON_DTYPES
    dims: tuple[int | str, ...]  # without the batch dim; -1 dynamic; str = filled from the model config
    doc: str = ""

    def resolved(self, config: Mapping[str, object]) -> TensorSpec:
        dims = tuple(int(config[d]) if isinstance(d, str) else d for d in self.dims)  # type: ignore[arg-type]
        return replace(self, dims=dims)

    @property
    def triton_dtype(self) -> str:
        return TRITON_DTYPES[self.dtype]


ExampleMaker = Callable[[Mapping[str, object], int, np.random.Generator], dict[str, np.ndarray]]


@dataclass(frozen=True)
class ModelSpec:
    """One served model. `make_example(config, batch, rng)` returns valid inputs (parity, warm-up)."""

    name: str  # Triton model name and model_repository/ folder
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    make_example: ExampleMaker
    max_batch_size: int = 256
    max_queue_delay_us: int = 2000
    preferred_batch_sizes: tuple[int, ...] = ()
    atol: float = 1e-4  # parity tolerance ONNX Runtime vs PyTorch
    rtol: float = 1e-3
    checkpoint: str = ""  # artifacts/checkpoints/<checkpoint>.pt this model is exported from
    served_online: bool = True  # False: run offline by export only (the item tower)
    extra: dict[str, object] = field(default_factory=dict)

    def resolve(self, config: Mapping[str, object]) -> ModelSpec:
        return replace(
            self,
            inputs=tuple(t.resolved(config) for t in self.inputs),
            outputs=tuple(t.resolved(config) for t in self.outputs),
        )

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]


# The registry: filled by the per-model specs below (one per model) as the models land.
SPECS: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    if spec.name in SPECS:
        raise ValueError(f"spec {spec.name!r} registered twice")
    SPECS[spec.name] = spec
    return spec
