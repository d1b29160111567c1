"""Fixtures of the chart checks: the pinned helm binary, fetched once per machine."""

from __future__ import annotations

import pytest

from tests.helm.chart import ensure_helm


@pytest.fixture(scope="session", autouse=True)
def helm_binary():
    """The pinned helm (tools/fetch_helm.py): downloaded on first use, then cached in the
    ignored ``.tools/`` folder."""
    return ensure_helm()
