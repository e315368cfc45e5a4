"""Gateway settings: every knob is a `SERVING_*` environment variable (or a line in `.env`).

One `Settings` object is built at start-up and handed to everything else; nothing reads the
environment directly. Defaults are the laptop set-up: embedded ONNX Runtime on CPU, the model
repository and artifacts from `make models` in the working directory.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from serving.contracts.experiments import ExperimentConfig, read_experiment

Backend = Literal["embedded", "triton"]
Provider = Literal["auto", "cpu", "cuda", "tensorrt"]
ManifestCheck = Literal["hash", "size", "off"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SERVING_", env_file=".env", extra="ignore", frozen=True, populate_by_name=True
    )

    # Network
    host: str = Field("127.0.0.1", description="interface to bind; 0.0.0.0 inside a container")
    port: int = Field(8080, ge=1, le=65535, description="HTTP port")
    grpc_port: int = Field(50051, ge=0, le=65535, description="gRPC port (storefront API); 0 = any free port")
    grpc_enabled: bool = Field(True, description="serve the gRPC API beside HTTP, over the same models")

    # Where the models come from
    backend: Backend = Field("embedded", description="embedded ONNX Runtime, or a Triton server")
    triton_url: str = Field("localhost:8001", description="Triton gRPC endpoint host:port")
    triton_protocol: Literal["grpc", "http"] = "grpc"
    model_repository: Path = Field(Path("model_repository"), description="Triton-layout model repository")
    artifacts: Path = Field(Path("artifacts"), description="FAISS index, feature tables, manifest.json")
    models: tuple[str, ...] | None = Field(
        None, description="models to serve (JSON list); default: every ONNX model in the repository"
    )
    manifest_check: ManifestCheck = Field(
        "hash", description="verify artifacts/manifest.json at start and reload: sha256, sizes only, or off"
    )
    require_manifest: bool = Field(False, description="refuse to start when artifacts/manifest.json is absent")

    # ONNX Runtime (embedded backend)
    execution_provider: Provider = Field("auto", description="auto = CUDA when present, else CPU")
    ort_intra_op_threads: int = Field(0, ge=0, description="threads inside one operator; 0 = ORT default")
    ort_inter_op_threads: int = Field(0, ge=0, description="threads across operators; 0 = ORT default")
    model_calls: Literal["auto", "thread", "inline"] = Field(
        "auto",
        description="run model and index calls in worker threads, or on the event loop; auto = inline when the "
        "process may use one CPU and the models run on it (a thread hop then buys no parallelism, only a hand-off)",
    )

    # Micro-batching (embedded backend; Triton batches on its side)
    batching: bool = Field(True, description="coalesce rows of concurrent requests per model")
    batch_max_size: int | None = Field(None, ge=1, description="rows per batch; default: config.pbtxt max_batch_size")
    batch_max_delay_ms: float | None = Field(
        None, ge=0, le=1000, description="longest wait for a fuller batch; default: config.pbtxt queue delay"
    )
    batch_concurrency: int = Field(1, ge=1, le=64, description="batches of one model running at the same time")
    batch_min_gain: float = Field(
        1.3,
        ge=0,
        description="queue a request for batching only where the model's warm-up curve says two such requests run "
        "at least this much faster together than apart (a batch may be a fifth padding: smaller gains are lost to "
        "it, bench/results); 0 = always batch",
    )
    queue_max_batches: int = Field(
        16, ge=1, description="queue bound per model, in full batches; beyond it requests get 503"
    )

    # Requests
    request_timeout_s: float = Field(5.0, gt=0, description="per-request deadline; 504 beyond it")
    max_body_bytes: int = Field(1_000_000, ge=1024, description="larger request bodies get 413")
    retry_after_s: int = Field(1, ge=0, description="Retry-After header on 503 answers")
    drain_timeout_s: float = Field(10.0, ge=0, description="graceful shutdown: wait this long for requests")
    header_timeout_s: float = Field(
        10.0, gt=0, le=3600, description="an HTTP connection whose request headers take longer is closed (408)"
    )
    warmup: bool = Field(True, description="run each model's config.pbtxt warm-up before reporting ready")
    admin_token: SecretStr | None = Field(
        None, description="enables POST /admin/reload (header X-Admin-Token); unset = endpoint disabled"
    )

    # Failing models: a budget per model call, and a circuit breaker per model (serving/runtime/breaker.py)
    model_timeout_ms: float | None = Field(
        None,
        gt=0,
        le=60_000,
        description="budget of one model call, queue included; past it the call counts as failed. Default: 150 ms "
        "on the Triton backend (a frozen server costs that, then its breaker opens); the request deadline on the "
        "embedded one (in-process models fail fast, and queue waits under load are shed by the bounded queue)",
    )
    breaker_failures: int = Field(3, ge=1, description="failures or timeouts in a row that open a model's breaker")
    breaker_reset_s: float = Field(0.5, gt=0, description="an open breaker lets one probe call through after this")

    # Retrieval
    nprobe: int | None = Field(None, ge=1, description="IVF lists searched; default: the manifest's tuned value")
    ef_search: int | None = Field(None, ge=1, description="HNSW efSearch; default: the manifest's tuned value")
    retrieval_gpu: Literal["auto", "faiss", "cupy", "off"] = Field(
        "auto",
        validation_alias=AliasChoices("SERVING_RETRIEVAL_GPU", "SERVING_FAISS_GPU"),  # the old name still works
        description="where retrieval searches; auto = the FAISS index on a GPU when FAISS has GPU support (not HNSW), "
        "else exact search with CuPy when it sees a CUDA device, else FAISS on the CPU; faiss / cupy = that engine "
        "(the CPU, with a warning, when absent); off = FAISS on the CPU",
    )

    # Which repository model answers /v1/intent and /v1/forecast (e.g. an int8 intent variant)
    intent_model: str = Field(
        "auto",
        description="model behind /v1/intent; auto = intent_bert_int8 when the embedded backend runs it on CPU "
        "(same BANKING77 accuracy, ~2x faster), else intent_bert",
    )
    forecast_model: str = Field("tcn", description="model behind /v1/forecast")

    # Intent
    handoff_threshold: float | None = Field(
        None, ge=0, le=1, description="confidence below it hands off to a human; default: the trained one"
    )

    # Live events (serving/events, serving/runtime/online_store, serving/runtime/event_log.py)
    online_store: str = Field(
        "memory", description="per-user online state: `memory` (this process) or a Redis URL `redis://host:port/db`"
    )
    online_history_max: int = Field(500, ge=1, le=10_000, description="recent click/cart/buy items kept per user")
    online_skips_max: int = Field(200, ge=1, le=10_000, description="recent skips kept per user")
    online_ttl_s: float = Field(
        30 * 86400, gt=0, description="a user's online state expires this long after the last event"
    )
    online_max_users: int = Field(
        1_000_000, ge=1, description="memory store: users kept (least recently active go first)"
    )
    online_timeout_ms: float = Field(
        50,
        gt=0,
        le=60_000,
        description="budget of one online-store call; past it /v1/recommend uses the stored history",
    )
    skip_ttl_s: float = Field(3600, ge=0, description="a skipped item is left out of recommendations this long")
    skip_streak: int = Field(
        3, ge=1, description="skips of one category in a row (no click on it between) that down-weight it"
    )
    skip_downweight: float = Field(0.5, gt=0, le=1, description="factor on the scores of a down-weighted category")
    explore_share: float = Field(
        0.0, ge=0, le=1, description="share of the k slots given to categories the user has not seen"
    )
    event_log: Path | None = Field(
        None, description="folder of the durable event log (JSONL); default: <artifacts>/../events"
    )
    event_log_max_bytes: int = Field(64 * 2**20, ge=4096, description="a log file rotates past this size")
    event_log_flush_s: float = Field(
        1.0, gt=0, le=60, description="accepted events are written out at least this often"
    )

    # Experiments on /v1/recommend (serving/contracts/experiments.py has the format; serving/experiments the ledger)
    experiment: Annotated[ExperimentConfig | None, NoDecode] = Field(
        None,
        description="A/B arms (and a shadow arm) for /v1/recommend: JSON text or the path of a JSON file; "
        "their tallies live beside the online store (memory or its Redis); unset = no experiment",
    )

    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower(cls, v: object) -> object:
        return v.lower() if isinstance(v, str) else v

    @property
    def model_budget_s(self) -> float:
        if self.model_timeout_ms is not None:
            return self.model_timeout_ms / 1e3
        return 0.15 if self.backend == "triton" else self.request_timeout_s

    @property
    def manifest_path(self) -> Path:
        return self.artifacts / "manifest.json"

    @property
    def event_log_dir(self) -> Path:
        return self.event_log if self.event_log is not None else self.artifacts.resolve().parent / "events"

    @field_validator("online_store")
    @classmethod
    def _store_url(cls, v: str) -> str:
        if v != "memory" and not v.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("expected `memory` or a Redis URL (redis://host:port/db, rediss://..., unix://...)")
        return v

    @field_validator("experiment", mode="before")
    @classmethod
    def _experiment(cls, v: object) -> object:
        return read_experiment(v) if isinstance(v, str | Path) else v  # then checked as an ExperimentConfig


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings (read once; tests build their own `Settings(...)` instead)."""
    return Settings()
