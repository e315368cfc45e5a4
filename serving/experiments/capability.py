"""The experiments capability: GET /v1/experiments (gRPC `Experiments`) reports the configured experiment.

Its state (`service`): the `Experiments` of SERVING_EXPERIMENT, opened with the Runtime and kept across reloads,
which /v1/recommend (assignment, impressions, the shadow arm) and /v1/events (clicks credited) use too. Its one
component is the checked configuration; its models are the arms' rankers, each checked at start and reload to be
served with DIN's tensors (a second DIN is a copy of the model folder under another name, e.g. din_b).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from serving.contracts.model_specs import DIN
from serving.experiments import pipeline
from serving.experiments.schemas import ExperimentsRequest, ExperimentsResponse
from serving.experiments.service import NAME, open_experiments
from serving.runtime.registry import Capability, Endpoint, LoadContext, Loaded, Missing, Models
from serving.runtime.settings import Settings

COMPONENT = "experiment"


def load(ctx: LoadContext) -> Loaded:
    cfg = ctx.settings.experiment
    return {COMPONENT: cfg if cfg is not None else Missing("none configured (SERVING_EXPERIMENT)")}


def check(parts: Mapping[str, Any], models: Models, settings: Settings) -> list[str]:
    cfg = settings.experiment
    if cfg is None:
        return []
    problems = []
    need_in = {t.name for t in DIN.inputs if not t.optional}
    for ranker in cfg.rankers:
        info = models.get(ranker)
        if info is None:
            problems.append(f"experiment {cfg.name}: ranker {ranker} is not a served model")
        elif not need_in <= set(info.input_names) or "prob" not in info.output_names:
            problems.append(f"experiment {cfg.name}: ranker {ranker} does not take DIN's inputs and give `prob`")
    return problems


CAPABILITY = Capability(
    name=NAME,
    endpoints=(
        Endpoint(
            "Experiments",
            "/v1/experiments",
            ExperimentsRequest,
            ExperimentsResponse,
            pipeline.report,
            "per arm: impressions, clicks, CTR with its interval; the shadow arm's latency and agreement",
            "experiments",
            method="GET",
        ),
    ),
    models=lambda settings, models: settings.experiment.rankers if settings.experiment is not None else (),
    load=load,
    check=check,
    components=(COMPONENT,),
    service=open_experiments,
)
