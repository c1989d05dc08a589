"""Every parameter of a run in three validated models: strategy, load and lab.

A :class:`Fault` (what breaks, when, for how long) is a lab parameter like the others: part
of :class:`LabConfig` and of the run's cache key. :mod:`stampede.injector` applies the
schedule, :mod:`stampede.fault_report` measures what it did.

One place (the brief's "settings: one place"): pods, the command line, the runner and the
notebooks all build these models, so a bad value is rejected with the same one-line message
everywhere, before any process starts. Pods read the same strategy fields from the environment
through :class:`PodSettings` (``STAMPEDE_`` prefix), which is also the compose file's contract.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from stampede.errors import ConfigError
from stampede.registry import strategy_names

__all__ = [
    "PRIMARY_KILL_ROOM_S",
    "Fault",
    "LabConfig",
    "LoadConfig",
    "PodSettings",
    "StrategyConfig",
    "check_schedule",
    "get_settings",
    "validated",
]

M = TypeVar("M", bound=BaseModel)


class StrategyConfig(BaseModel):
    """How a pod caches: the strategy, its TTLs and the origin it protects."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    strategy: str = Field("naive", description="registered strategy name")
    ttl_s: float = Field(5.0, gt=0, le=3600, description="cache TTL (SWR/XFetch: soft TTL), s")
    jitter: float | None = Field(
        None, ge=0, le=10, description="TTL x (1 + U(0, jitter)) on writes; default per strategy"
    )
    stale_s: float = Field(5.0, gt=0, le=3600, description="SWR: serve-stale window after TTL, s")
    beta: float = Field(1.0, ge=0, le=100, description="XFetch: early-refresh eagerness")
    cutoff: float = Field(0.8, gt=0, lt=1, description="fixed_cutoff: refresh at age >= cutoff*TTL")
    # A lock whose holder died lives out its lease; a waiter must not give up first. The lease
    # is short and renewed (every third of it) while a live holder refreshes, and a waiter
    # waits longer: the lease, one re-check (<= 1 s) and about a second for the new holder's
    # read, so at the defaults a dead holder costs its key a wait, never a 503.
    lease_ms: int = Field(3_000, gt=0, le=600_000, description="refresh lock lease, ms")
    renew: bool = Field(True, description="renew the lock lease every lease/3 while refreshing")
    wait: Literal["poll", "notify"] = Field("notify", description="how waiters learn of a value")
    poll_ms: float = Field(50.0, gt=0, le=10_000, description="poll interval for wait=poll, ms")
    wait_timeout_s: float = Field(5.0, gt=0, le=600, description="waiter gives up (503) after, s")
    origin_latency_ms: float = Field(200.0, ge=0, le=60_000, description="injected origin latency")
    origin_error_rate: float = Field(0.0, ge=0, le=1, description="share of origin reads that fail")
    origin_slow_rate: float = Field(
        0.0, ge=0, le=1, description="share of origin reads that take origin_slow_ms longer"
    )
    origin_slow_ms: float = Field(2000.0, ge=0, le=60_000, description="extra latency, slow reads")
    origin_timeout_ms: float | None = Field(
        None, gt=0, le=600_000, description="the pod abandons an origin read after this (503)"
    )
    negative_ttl_s: float = Field(
        2.0, ge=0, le=3600, description="404s are remembered this long (0: never)"
    )
    fail_open_concurrency: int = Field(
        4, ge=0, le=1000, description="Redis down: origin reads per pod at once (0: answer 503)"
    )

    @field_validator("strategy")
    @classmethod
    def _known_strategy(cls, name: str) -> str:
        if name not in strategy_names():
            valid = ", ".join(strategy_names())
            raise ValueError(f"unknown strategy {name!r}; valid: {valid}")
        return name


class LoadConfig(BaseModel):
    """What the load generator sends: how many clients, how fast, to which items."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    scenario: Literal["hot_key", "bulk_warm"] = Field("hot_key", description="traffic shape")
    clients: int = Field(50, ge=1, le=2000, description="simulated clients")
    duration_s: float = Field(60.0, gt=0, le=3600, description="load duration, s")
    pacing: Literal["open", "closed"] = Field("open", description="open: Poisson at --rate")
    rate: float = Field(380.0, gt=0, le=20_000, description="open loop: total requests/s")
    think_ms: float = Field(0.0, ge=0, le=60_000, description="closed loop: pause between requests")
    hot_share: float = Field(0.95, ge=0, le=1, description="share of traffic on the hot item")
    hot_item: int = Field(1, ge=1, description="the hot item's id")
    items: int = Field(100, ge=1, le=100_000, description="ids 1..items receive traffic")
    warm_items: int = Field(100, ge=1, le=100_000, description="bulk_warm: items warmed at t=0")
    seed: int = Field(0, description="seed for arrivals and item choice")
    request_timeout_s: float = Field(10.0, gt=0, le=600, description="client gives up after, s")
    workers: int = Field(1, ge=1, le=16, description="load-generator processes")
    retries: int = Field(0, ge=0, le=10, description="retries of a 503 or refused connection")
    backoff_ms: float = Field(100.0, gt=0, le=60_000, description="retry backoff base, ms")
    backoff_cap_ms: float = Field(2000.0, gt=0, le=600_000, description="retry backoff cap, ms")

    @model_validator(mode="after")
    def _hot_item_in_range(self) -> LoadConfig:
        if self.hot_item > self.items:
            raise ValueError(f"hot_item {self.hot_item} is outside 1..items ({self.items})")
        if self.workers > self.clients:
            raise ValueError(f"workers ({self.workers}) cannot exceed clients ({self.clients})")
        return self


class Fault(BaseModel):
    """One scheduled fault: what, when (s after the load starts), for how long, on which pod."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["redis_restart", "pod_kill", "primary_kill"] = Field(description="what breaks")
    at_s: float = Field(gt=0, le=3600, description="when, s after the load starts")
    down_s: float | None = Field(
        1.0, ge=0, le=600, description="how long it stays down (pod_kill: None = for good)"
    )
    pod: int = Field(0, ge=0, le=15, description="pod_kill: which pod, 0-based")
    after_lock_s: float | None = Field(
        None,
        ge=0,
        le=60,
        description="primary_kill: from at_s wait for the hot key's lock, then this long",
    )

    @model_validator(mode="after")
    def _fields_of_its_kind(self) -> Fault:
        if self.kind == "primary_kill" and "down_s" in self.model_fields_set:
            raise ValueError("primary_kill does not restart the node (its replica takes over)")
        if self.kind != "primary_kill" and self.after_lock_s is not None:
            raise ValueError(f"after_lock_s is a primary_kill field, not one of {self.kind}")
        return self


# primary_kill: time left in the load after the kill for the replica's promotion (measured
# 4-6.5 s at the lab's 2 s cluster-node-timeout) and a refresh after it
PRIMARY_KILL_ROOM_S = 8.0


def check_schedule(faults: Sequence[Fault], duration_s: float) -> None:
    """Refuse a fault that would start or end after the load: the run could not see it."""
    for fault in faults:
        if fault.kind == "redis_restart" and fault.down_s is None:
            raise ConfigError("redis_restart needs down_s (seconds Redis stays down)")
        if fault.kind == "primary_kill":
            end = fault.at_s + (fault.after_lock_s or 0.0) + PRIMARY_KILL_ROOM_S
            if end >= duration_s:
                raise ConfigError(
                    f"fault primary_kill at {fault.at_s:g} s leaves less than "
                    f"{PRIMARY_KILL_ROOM_S:g} s of load ({duration_s:g} s) for the promotion; "
                    f"valid: at_s + after_lock_s + {PRIMARY_KILL_ROOM_S:g} < duration_s"
                )
            continue
        end = fault.at_s + (fault.down_s or 0.0)
        if end >= duration_s:
            raise ConfigError(
                f"fault {fault.kind} at {fault.at_s:g} s + down {fault.down_s} s ends after the "
                f"load ({duration_s:g} s); valid: at_s + down_s < duration_s"
            )


class LabConfig(BaseModel):
    """The shape of the embedded lab: how many pods and how big the origin is."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pods: int = Field(3, ge=1, le=16, description="pod processes behind round-robin")
    origin_items: int = Field(100, ge=1, le=100_000, description="rows in the SQLite origin")
    faults: tuple[Fault, ...] = Field((), description="faults injected during the run")
    redis_cluster: int = Field(
        0, ge=0, le=9, description="Redis Cluster primaries (0: one plain redis-server; else >= 3)"
    )
    redis_replicas: int = Field(
        0, ge=0, le=1, description="replicas per cluster primary (needs redis_cluster)"
    )

    @model_validator(mode="after")
    def _faults_in_range(self) -> LabConfig:
        if self.redis_cluster in (1, 2):  # redis-cli --cluster create refuses fewer than 3
            raise ValueError(f"redis_cluster={self.redis_cluster}: a cluster needs 3 primaries")
        if self.redis_replicas and not self.redis_cluster:
            raise ValueError("redis_replicas needs redis_cluster (replicas of cluster primaries)")
        if self.redis_cluster and any(f.kind == "redis_restart" for f in self.faults):
            raise ValueError("redis_restart restarts one redis-server; not with redis_cluster")
        if any(f.kind == "primary_kill" for f in self.faults) and not (
            self.redis_cluster and self.redis_replicas
        ):
            raise ValueError(
                "primary_kill kills a Redis Cluster primary for its replica to take over; "
                f"it needs redis_cluster >= 3 and redis_replicas=1 (got redis_cluster="
                f"{self.redis_cluster}, redis_replicas={self.redis_replicas})"
            )
        for fault in self.faults:
            if fault.pod >= self.pods:
                raise ValueError(
                    f"fault {fault.kind} names pod {fault.pod}; valid: 0..{self.pods - 1}"
                )
        return self


class PodSettings(StrategyConfig, BaseSettings):
    """A pod's settings from the environment, ``STAMPEDE_*``: the compose file's contract."""

    model_config = SettingsConfigDict(env_prefix="STAMPEDE_", extra="ignore", frozen=True)

    redis_url: str = "redis://127.0.0.1:6379/0"
    origin_path: Path = Path("data/origin.sqlite3")
    pod_name: str = "pod-1"
    lab_secret: SecretStr = Field(
        SecretStr(""), description="bearer token of /admin (STAMPEDE_LAB_SECRET); empty: closed"
    )
    allowed_hosts: str = Field(
        "", description="Host names answered besides loopback (STAMPEDE_ALLOWED_HOSTS, a,b:port)"
    )

    def strategy_config(self) -> StrategyConfig:
        return StrategyConfig(**{k: getattr(self, k) for k in StrategyConfig.model_fields})


@lru_cache
def get_settings() -> PodSettings:
    """Build the pod's settings once, on first use, never at import time."""
    return validated(PodSettings)


def validated(model: type[M], **values: Any) -> M:
    """Build ``model`` or raise :class:`ConfigError` with one line per bad field."""
    try:
        return model(**values)
    except ValidationError as exc:
        raise ConfigError(_one_line(exc)) from None


def _one_line(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        msg = err["msg"].removeprefix("Value error, ")
        if err["loc"]:
            where = ".".join(str(p) for p in err["loc"])
            msg = f"{where}: {msg} (got {err.get('input')!r})"
        parts.append(msg)
    return "; ".join(parts)
