"""The lab answers: one real request through every pod."""

from __future__ import annotations

import httpx

from stampede.config import StrategyConfig
from stampede.lab import Lab


def test_every_pod_serves_item_one_with_an_outcome_header(lab: Lab) -> None:
    lab.configure(StrategyConfig(strategy="naive"))
    outcomes = []
    for url in lab.pods:
        resp = httpx.get(f"{url}/items/1")
        assert resp.status_code == 200
        assert resp.json()["id"] == 1
        outcomes.append(resp.headers["x-cache"])
    assert outcomes == ["miss", "hit", "hit"]
