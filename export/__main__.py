"""`python -m export`: export every model whose checkpoint exists into model_repository/ and artifacts/.

    python -m export [--checkpoints artifacts/checkpoints] [--repo model_repository] [--artifacts artifacts]
                     [--gpu-config | --cpu-config] [--trt | --cuda-ep] [--models din intent_bert ...]
                     [--index auto|flat|ivf_flat|ivf_pq|hnsw] [--index-memory-mb 2048]

Prints a summary table and writes artifacts/reports/export.json and artifacts/manifest.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from export.onnx_export import DEFAULT_OPSET
from export.pipeline import ExportArgs, run_export
from export.retrieval import DEFAULT_MEMORY_MB, KINDS, IndexBudgetError
from serving.contracts.model_specs import SPECS


def parse_args(argv: list[str] | None = None) -> ExportArgs:
    p = argparse.ArgumentParser(
        prog="python -m export", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--checkpoints", type=Path, default=Path("artifacts/checkpoints"))
    p.add_argument("--repo", type=Path, default=Path("model_repository"), help="Triton model repository to write")
    p.add_argument("--artifacts", type=Path, default=Path("artifacts"), help="FAISS index, features, manifest, reports")
    kind = p.add_mutually_exclusive_group()
    kind.add_argument("--gpu-config", dest="gpu", action="store_true", default=True, help="KIND_GPU (default, NGC)")
    kind.add_argument("--cpu-config", dest="gpu", action="store_false", help="KIND_CPU (Triton without a GPU)")
    acc = p.add_mutually_exclusive_group()
    acc.add_argument("--trt", action="store_const", const="tensorrt", dest="accelerator", help="TensorRT FP16 EP")
    acc.add_argument("--cuda-ep", action="store_const", const="cuda", dest="accelerator", help="CUDA EP settings")
    p.add_argument(
        "--models",
        nargs="+",
        choices=sorted(SPECS),
        default=[],
        help="only these (default: all trained); tcn also exports tcn_plans (same checkpoint)",
    )
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET)
    p.add_argument("--exporter", choices=["auto", "dynamo", "torchscript"], default="auto")
    p.add_argument("--data", type=Path, default=None, help="behaviour data dir (default: what the checkpoint records)")
    p.add_argument("--profile", default=None, help="generated data profile (default: the model's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sales-data", type=Path, default=None, help="sales data dir (default: the TCN checkpoint's)")
    p.add_argument("--sales-profile", default=None, help="generated sales profile (default: the TCN's)")
    p.add_argument("--intent-data", type=Path, default=None, help="intent train/test CSV dir (default: recorded)")
    p.add_argument("--index", choices=["auto", *KINDS], default="auto", help="FAISS index (auto: by size and memory)")
    p.add_argument(
        "--index-memory-mb",
        type=float,
        default=DEFAULT_MEMORY_MB,
        help="memory budget of the FAISS index in MiB: auto picks the best-recall kind that fits, else fails",
    )
    p.add_argument("--recall-k", type=int, default=200, help="k of the recall@k measured against exact search")
    p.add_argument("--no-int8", dest="int8", action="store_false", help="skip the int8 intent model")
    p.add_argument("--no-latency", dest="latency", action="store_false", help="skip the ONNX Runtime latency runs")
    p.add_argument("--keep-versions", type=int, default=2)
    ns = p.parse_args(argv)
    if ns.accelerator and not ns.gpu:
        p.error("--trt / --cuda-ep need --gpu-config")
    return ExportArgs(
        checkpoints=ns.checkpoints,
        repo=ns.repo,
        artifacts=ns.artifacts,
        gpu_config=ns.gpu,
        accelerator=ns.accelerator or "none",
        opset=ns.opset,
        exporter=ns.exporter,
        data=ns.data,
        profile=ns.profile,
        seed=ns.seed,
        sales_data=ns.sales_data,
        sales_profile=ns.sales_profile,
        intent_data=ns.intent_data,
        index=ns.index,
        index_memory_mb=ns.index_memory_mb,
        recall_k=ns.recall_k,
        int8=ns.int8,
        latency=ns.latency,
        models=tuple(ns.models),
        keep_versions=ns.keep_versions,
        command=" ".join(["python -m export", *(argv if argv is not None else sys.argv[1:])]),
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    t0 = time.perf_counter()
    try:
        report = run_export(args)
    except IndexBudgetError as exc:
        print(f"export: {exc}", file=sys.stderr)
        return 2
    print(report["table"])
    retrieval = report.get("retrieval")
    if retrieval:
        k = retrieval["k"]
        print(
            f"\nFAISS {retrieval['index_type']} {retrieval['index_params']} over {retrieval['item_count']} items: "
            f"recall@{k} {retrieval[f'recall_at_{k}']:.4f} vs exact, {retrieval['queries_per_s']:.0f} queries/s"
        )
    if not report["models"]:
        print(f"no checkpoints under {args.checkpoints}; train with `python -m training train all`", file=sys.stderr)
        return 1
    took = time.perf_counter() - t0
    print(f"\nexport done in {took:.1f}s -> {args.repo}/, {args.artifacts}/manifest.json", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
