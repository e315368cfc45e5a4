"""Benchmark profiles: `quick` (a few minutes, for `make bench`), `full` (longer steps, more repeats), `smoke`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Profile:
    name: str
    # Load tests (bench/locustfile.py step shape)
    steps: tuple[int, ...]
    step_s: float
    warmup_s: float  # left out at the start of each step
    repeats: int  # each load figure is the median of this many runs
    warmup_run_s: float  # a discarded run at 8 users before the measured ones
    # Micro-batching on vs off: fixed load
    fixed_users: int
    fixed_s: float
    # Triton alone
    direct_concurrency: tuple[int, ...]
    direct_s: float
    # Micro-benchmarks
    micro_seconds: float
    din_batches: tuple[int, ...]
    bert_batches: tuple[int, ...]
    bert_quality_texts: int
    faiss_items: int
    faiss_kinds: tuple[str, ...]
    faiss_nlist: int  # 0 = what export would choose (4 sqrt(n)); fewer lists train faster
    faiss_queries: int
    faiss_single_queries: int


PROFILES = {
    # Seconds-long, for tests and for trying the pipeline on tiny artifacts: the figures mean nothing.
    "smoke": Profile(
        name="smoke",
        steps=(1, 4),
        step_s=2.0,
        warmup_s=0.3,
        repeats=1,
        warmup_run_s=1.0,
        fixed_users=8,
        fixed_s=2.0,
        direct_concurrency=(1, 4),
        direct_s=1.0,
        micro_seconds=0.1,
        din_batches=(1, 64),
        bert_batches=(1, 8),
        bert_quality_texts=32,
        faiss_items=20_000,
        faiss_kinds=("flat", "ivf_flat"),
        faiss_nlist=64,
        faiss_queries=100,
        faiss_single_queries=20,
    ),
    "quick": Profile(
        name="quick",
        steps=(1, 2, 4, 8, 16, 32),
        step_s=5.0,
        warmup_s=1.0,
        repeats=3,
        warmup_run_s=3.0,
        fixed_users=32,
        fixed_s=6.0,
        direct_concurrency=(1, 4, 16),
        direct_s=3.0,
        micro_seconds=0.5,
        din_batches=(1, 16, 64, 200, 512, 1024),
        bert_batches=(1, 16),
        bert_quality_texts=512,
        faiss_items=1_000_000,
        faiss_kinds=("flat", "ivf_flat"),
        faiss_nlist=1024,
        faiss_queries=500,
        faiss_single_queries=100,
    ),
    "full": Profile(
        name="full",
        steps=(1, 2, 4, 8, 12, 16, 24, 32, 48, 64),
        step_s=20.0,
        warmup_s=3.0,
        repeats=5,
        warmup_run_s=10.0,
        fixed_users=32,
        fixed_s=30.0,
        direct_concurrency=(1, 2, 4, 8, 16, 32),
        direct_s=10.0,
        micro_seconds=2.0,
        din_batches=(1, 8, 32, 64, 128, 200, 256, 512, 1024),
        bert_batches=(1, 8, 16, 32, 64),
        bert_quality_texts=3080,
        faiss_items=1_000_000,
        faiss_kinds=("flat", "ivf_flat", "ivf_pq", "hnsw"),
        faiss_nlist=0,
        faiss_queries=1000,
        faiss_single_queries=300,
    ),
}
