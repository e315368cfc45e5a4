"""GET /v1/experiments as a transport-free async function: per arm impressions, clicks, carts, buys and CTR with
its Wilson interval; the shadow arm's runs, latency p50/p99 and mean agreement with the live answers. The figures
are the ledger's: this process's (memory) or every gateway's on the same Redis."""

from __future__ import annotations

from collections.abc import Mapping

from serving.contracts.experiments import ExperimentConfig, Shadow
from serving.experiments.ledger import IMPRESSIONS, tally
from serving.experiments.schemas import ArmReport, ExperimentsRequest, ExperimentsResponse, ShadowReport
from serving.experiments.service import active
from serving.experiments.stats import LATENCY_EDGES_MS, bucket_quantile, wilson
from serving.runtime.runtime import Runtime


async def report(rt: Runtime, req: ExperimentsRequest) -> ExperimentsResponse:
    exp = active(rt)
    if exp is None:
        return ExperimentsResponse(experiment=None, confidence=req.confidence, arms=[])
    totals = await exp.totals()  # LedgerUnavailable: 503
    cfg = exp.config
    return ExperimentsResponse(
        experiment=cfg.name,
        ledger=exp.ledger.kind,
        confidence=req.confidence,
        arms=_arms(cfg, totals, req.confidence),
        shadow=_shadow(cfg.shadow, totals) if cfg.shadow is not None else None,
    )


def _arms(cfg: ExperimentConfig, totals: Mapping[str, float], confidence: float) -> list[ArmReport]:
    weights = sum(a.weight for a in cfg.arms)
    out = []
    for arm in cfg.arms:
        n, clicks = int(totals.get(tally(arm.name, IMPRESSIONS), 0)), int(totals.get(tally(arm.name, "click"), 0))
        interval = wilson(clicks, n, confidence)
        out.append(
            ArmReport(
                name=arm.name,
                weight=arm.weight / weights,
                ranker=arm.ranker,
                candidates=arm.candidates,
                explore_share=arm.explore_share,
                impressions=n,
                clicks=clicks,
                carts=int(totals.get(tally(arm.name, "cart"), 0)),
                buys=int(totals.get(tally(arm.name, "buy"), 0)),
                ctr=clicks / n if n else None,
                ctr_low=interval[0] if interval else None,
                ctr_high=interval[1] if interval else None,
            )
        )
    return out


def _shadow(sh: Shadow, totals: Mapping[str, float]) -> ShadowReport:
    def count(measure: str) -> int:
        return int(totals.get(tally(sh.name, f"shadow_{measure}"), 0))

    ok = count("ok")
    buckets = [totals.get(tally(sh.name, f"shadow_ms_{i}"), 0.0) for i in range(len(LATENCY_EDGES_MS) + 1)]
    return ShadowReport(
        name=sh.name,
        share=sh.share,
        ranker=sh.ranker,
        candidates=sh.candidates,
        explore_share=sh.explore_share,
        runs=ok + count("degraded"),
        degraded=count("degraded"),
        failed=count("failed"),
        dropped=count("dropped"),
        latency_ms_p50=bucket_quantile(buckets, 0.5),
        latency_ms_p99=bucket_quantile(buckets, 0.99),
        agreement=totals.get(tally(sh.name, "shadow_agreement"), 0.0) / ok if ok else None,
    )
