"""An experiment on /v1/recommend (SERVING_EXPERIMENT): arms that users are assigned to by a stable hash, and
an optional shadow arm. Declarative data, parsed and checked once when the settings are read; the recommend
pipeline applies an arm's overrides, serving/experiments keeps the ledger and the report.

    {"name": "ranker-b",
     "arms": [{"name": "control", "weight": 1}, {"name": "b", "weight": 1, "ranker": "din_b"}],
     "shadow": {"name": "deep", "candidates": 1000, "share": 0.1}}

Assignment: blake2b(experiment name, user id) -> [0, 1) -> the arm whose slice of the weights covers it. The same
user gets the same arm in every process and after every restart; another experiment name reshuffles users.
User ids are hashed as text, so 123 and "123" are one user (as the id maps treat them).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, Strict, StringConstraints, model_validator

from serving.contracts.model_specs import DIN

MAX_CANDIDATES = 1000  # /v1/recommend's own limit (serving/recommend/schemas.py; a test keeps the two equal)
MAX_ARMS = 16
# Names go into Prometheus labels and Redis keys: a short, plain alphabet.
Name = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)  # a misspelt key is an error, not a silent default


class Variant(_Config):
    """What an arm changes in the recommend pipeline; unset fields are as without an experiment."""

    name: Name
    ranker: Name = Field(DIN.name, description="repository model that ranks: DIN, or a DIN-spec copy (e.g. din_b)")
    candidates: Annotated[int, Strict()] | None = Field(
        None, ge=1, le=MAX_CANDIDATES, description="retrieval depth, replacing the request's (at least k is used)"
    )
    explore_share: float | None = Field(None, ge=0, le=1, description="replaces SERVING_EXPLORE_SHARE")


class Arm(Variant):
    weight: float = Field(1.0, ge=0, allow_inf_nan=False, description="share of users, relative to the others'")


class Shadow(Variant):
    share: float = Field(gt=0, le=1, description="share of the personalised answers the shadow also computes")
    max_inflight: Annotated[int, Strict()] = Field(4, ge=1, le=256, description="runs at once; more are dropped")


class ExperimentConfig(_Config):
    name: Name
    arms: tuple[Arm, ...] = Field(min_length=1, max_length=MAX_ARMS)
    shadow: Shadow | None = None
    ttl_s: float = Field(
        3600, gt=0, le=30 * 86400, description="an answer's items earn clicks this long after it was served"
    )

    @model_validator(mode="after")
    def _arms(self) -> ExperimentConfig:
        names = [a.name for a in self.arms] + ([self.shadow.name] if self.shadow is not None else [])
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"arm names must differ (the shadow's too): {', '.join(twice)}")
        if sum(a.weight for a in self.arms) <= 0:
            raise ValueError("at least one arm needs a weight > 0")
        return self

    @property
    def rankers(self) -> tuple[str, ...]:
        variants = [*self.arms, *([self.shadow] if self.shadow is not None else [])]
        return tuple(dict.fromkeys(v.ranker for v in variants))

    def assign(self, user_id: int | str) -> Arm:
        """The user's arm: stable across processes and restarts (blake2b, never Python's salted hash())."""
        x = unit_hash(self.name, user_id) * sum(a.weight for a in self.arms)
        edge = 0.0
        for arm in self.arms:
            edge += arm.weight
            if x < edge:
                return arm
        return next(a for a in reversed(self.arms) if a.weight > 0)  # x == total only by rounding


def unit_hash(salt: str, key: int | str) -> float:
    """A uniform number in [0, 1) from (salt, key); the key as text."""
    digest = hashlib.blake2b(f"{salt}\x1f{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def read_experiment(value: str | Path) -> dict[str, Any] | None:
    """SERVING_EXPERIMENT as given: JSON text (starting with "{" or "["), or a JSON file's path; blank = none."""
    text = str(value).strip()
    if not text:
        return None
    if not text.startswith(("{", "[")):
        path = Path(text)
        try:
            text = path.read_text()
        except OSError as exc:
            raise ValueError(f"neither JSON text nor a readable JSON file: {path} ({exc.strerror})") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise ValueError("expected a JSON object {name, arms, shadow?, ttl_s?}")
    return data
