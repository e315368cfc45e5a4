"""Inference backends behind one interface (base.InferenceBackend): embedded ONNX Runtime, Triton (issue 7)."""

from __future__ import annotations

from serving.backends.base import InferenceBackend, ModelInfo, ReloadResult, TensorInfo
from serving.settings import Settings

__all__ = ["InferenceBackend", "ModelInfo", "ReloadResult", "TensorInfo", "make_backend"]


def make_backend(settings: Settings) -> InferenceBackend:
    """The backend SERVING_BACKEND names, configured from the settings."""
    if settings.backend == "triton":
        try:
            from serving.backends.triton import TritonBackend  # issue 7
        except ImportError as exc:
            raise RuntimeError("SERVING_BACKEND=triton, but the Triton backend is not built yet (issue 7)") from exc
        return TritonBackend.from_settings(settings)
    from serving.backends.embedded import EmbeddedBackend

    return EmbeddedBackend(
        str(settings.model_repository),
        models=settings.models,
        provider=settings.execution_provider,
        intra_op_threads=settings.ort_intra_op_threads,
        inter_op_threads=settings.ort_inter_op_threads,
        workers=max(2, 4 * settings.batch_concurrency),
        warmup=settings.warmup,
    )
