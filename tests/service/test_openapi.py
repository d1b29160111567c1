"""Schemathesis over /openapi.json: no generated request makes the service answer 5xx."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from tests.service.conftest import TOKEN, Served


@pytest.fixture(scope="module")
def api_schema(served: Served):
    return schemathesis.openapi.from_url(served.url + "/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_no_server_errors(case, served: Served):
    case.call_and_validate(base_url=served.url, headers={"Authorization": f"Bearer {TOKEN}"},
                           checks=[not_a_server_error], timeout=30)


def test_openapi_lists_the_api(served: Served):
    import httpx

    paths = httpx.get(served.url + "/openapi.json").json()["paths"]
    for p in ("/v1/projects", "/v1/projects/{project}", "/v1/projects/{project}/ingest",
              "/v1/jobs/{job_id}", "/v1/projects/{project}/rounds",
              "/v1/projects/{project}/rounds/{n}", "/v1/projects/{project}/rounds/{n}/selection",
              "/v1/projects/{project}/labels", "/v1/projects/{project}/webhooks/label-studio",
              "/v1/projects/{project}/frames/{frame_id}", "/healthz", "/readyz", "/metrics"):
        assert p in paths, p
