"""Inference backends behind one interface (base.InferenceBackend): embedded ONNX Runtime, Triton."""

from __future__ import annotations

from serving.runtime.backends.base import InferenceBackend, ModelInfo, ReloadResult, TensorInfo
from serving.runtime.settings import Settings

__all__ = ["InferenceBackend", "ModelInfo", "ReloadResult", "TensorInfo", "make_backend"]


def make_backend(settings: Settings) -> InferenceBackend:
    """The backend SERVING_BACKEND names, configured from the settings."""
    if settings.backend == "triton":
        try:
            from serving.runtime.backends.triton import TritonBackend  # imported here: tritonclient's HTTP/gRPC parts
        except ImportError as exc:
            raise RuntimeError("SERVING_BACKEND=triton needs tritonclient: pip install 'shopserve[serve]'") from exc
        return TritonBackend.from_settings(settings)
    from serving.runtime.backends.embedded import EmbeddedBackend

    return EmbeddedBackend(
        str(settings.model_repository),
        models=settings.models,
        provider=settings.execution_provider,
        intra_op_threads=settings.ort_intra_op_threads,
        inter_op_threads=settings.ort_inter_op_threads,
        workers=max(2, 4 * settings.batch_concurrency),
        warmup=settings.warmup,
        model_calls=settings.model_calls,
    )
