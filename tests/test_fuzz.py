"""Malformed input never makes a pod answer 5xx, except the 503 its OpenAPI documents.

Schemathesis (pinned 4.32.5, a test-only dependency) reads the live pod's ``/openapi.json``
and sends generated requests, valid and invalid, to every GET route. A 503 is acceptable only
because ``GET /items/{id}`` documents it (with ``Retry-After``) for a failing origin or Redis.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from stampede.config import PodSettings, StrategyConfig
from stampede.lab import Lab
from stampede.pod import create_app
from tests.helpers import bearer

schemathesis = pytest.importorskip("schemathesis")

# The pod's own OpenAPI document, built without starting anything (create_app connects only
# in its lifespan); the requests go to a live pod of the shared lab.
schema = schemathesis.openapi.from_dict(create_app(PodSettings()).openapi()).include(method="GET")
schema.config.generation.update(max_examples=60, deterministic=True)


@pytest.fixture(scope="module")
def pod_url(lab: Lab) -> str:
    lab.configure(StrategyConfig(strategy="single_flight", origin_latency_ms=5))
    return lab.pods[0]


@schema.parametrize()
def test_generated_requests_never_get_an_undocumented_5xx(case: Any, pod_url: str) -> None:
    response = case.call(base_url=pod_url, timeout=10)
    documented = case.operation.definition.raw.get("responses", {})
    if response.status_code >= 500:
        assert str(response.status_code) in documented, (case.path, response.status_code)
        assert response.status_code == 503 and "retry-after" in response.headers
    assert response.status_code < 500 or response.status_code == 503, response.text[:200]


@pytest.mark.parametrize(
    "body",
    ["not json", "[]", '{"strategy": "nope"}', '{"ttl_s": -1}', '{"extra": 1}', '{"wait": 3}'],
)
def test_a_malformed_configuration_is_a_422_with_one_line(lab: Lab, body: str) -> None:
    resp = httpx.post(
        f"{lab.pods[0]}/admin/config",
        content=body,
        headers={"content-type": "application/json", **bearer(lab)},
    )
    assert resp.status_code == 422
    assert "\n" not in resp.json()["detail"]


def test_the_503_is_documented_with_retry_after(lab: Lab) -> None:
    spec = httpx.get(f"{lab.pods[0]}/openapi.json").json()
    responses = spec["paths"]["/items/{item_id}"]["get"]["responses"]
    assert {"200", "404", "422", "503"} <= set(responses)
    assert "Retry-After" in responses["503"]["headers"]
