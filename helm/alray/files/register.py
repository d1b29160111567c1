"""Register the chart's projects with the alray API (run by the chart's register Job).

Reads ``/etc/alray/project-*.yaml`` (the chart's ConfigMap), waits until ``$ALRAY_URL/readyz``
answers, then POSTs each config to ``/v1/projects`` with the first admin token of
``$ALRAY_API_TOKENS``. 201 (created) and 409 (exists: kept as it is) both count as done;
anything else fails the Job with the service's answer.
"""

from __future__ import annotations

import glob
import os
import sys
import time

import httpx
import yaml

SCOPES = ("read", "label", "admin")


def admin_token(spec: str) -> str:
    """The first admin token of ``scope:token,…`` (a token without a known scope is admin)."""
    for item in spec.split(","):
        scope, sep, token = item.strip().partition(":")
        if not (sep and scope in SCOPES and token.strip()):
            scope, token = "admin", item.strip()
        if scope == "admin" and token.strip():
            return token.strip()
    raise SystemExit("ALRAY_API_TOKENS holds no admin token: the register Job needs one")


def wait_ready(http: httpx.Client, deadline: float) -> None:
    """Poll /readyz until it answers 200 or the deadline passes."""
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            r = http.get("/readyz")
            if r.status_code == 200:
                return
            last = f"HTTP {r.status_code}"
        except httpx.HTTPError as err:
            last = str(err)
        time.sleep(5)
    raise SystemExit(f"{http.base_url}readyz not ready in time (last: {last})")


def main() -> int:
    url = os.environ.get("ALRAY_URL", "http://127.0.0.1:8000")
    token = admin_token(os.environ.get("ALRAY_API_TOKENS", ""))
    timeout = float(os.environ.get("ALRAY_REGISTER_TIMEOUT_S", "1800"))
    files = sorted(glob.glob(os.path.join(os.environ.get("ALRAY_CONFIG_DIR", "/etc/alray"),
                                          "project-*.yaml")))
    with httpx.Client(base_url=url, timeout=60,
                      headers={"Authorization": f"Bearer {token}"}) as http:
        wait_ready(http, time.monotonic() + timeout)
        for path in files:
            with open(path) as f:
                config = yaml.safe_load(f)
            r = http.post("/v1/projects", json=config)
            if r.status_code == 201:
                print(f"{config['name']}: created")
            elif r.status_code == 409:
                print(f"{config['name']}: exists, kept as it is")
            else:
                print(f"{config['name']}: HTTP {r.status_code}: {r.text}", file=sys.stderr)
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
