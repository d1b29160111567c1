"""Schemathesis over /openapi.json: no generated request makes the service answer 5xx."""

from __future__ import annotations

import httpx
import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.service.conftest import TOKEN, Served


def test_no_server_errors(served: Served):
    schema = schemathesis.openapi.from_url(served.url + "/openapi.json")
    failures: list[str] = []
    operations = [r.ok() for r in schema.get_all_operations()]
    assert len(operations) >= 14
    for op in operations:

        @given(case=op.as_strategy())
        @settings(max_examples=15, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def check(case) -> None:
            resp = case.call(base_url=served.url, timeout=30,
                             headers={"Authorization": f"Bearer {TOKEN}"})
            if resp.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path} -> {resp.status_code}: "
                                f"{resp.text[:200]}\n  {case.as_curl_command()[:400]}")

        check()
    assert not failures, "\n".join(failures[:10])


def test_openapi_lists_the_api(served: Served):
    spec = httpx.get(served.url + "/openapi.json").json()
    for p in ("/v1/projects", "/v1/projects/{project}", "/v1/projects/{project}/ingest",
              "/v1/jobs/{job_id}", "/v1/projects/{project}/rounds",
              "/v1/projects/{project}/rounds/{n}", "/v1/projects/{project}/rounds/{n}/selection",
              "/v1/projects/{project}/labels", "/v1/projects/{project}/webhooks/label-studio",
              "/v1/projects/{project}/frames/{frame_id}", "/healthz", "/readyz", "/metrics"):
        assert p in spec["paths"], p
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
