"""The Ray Serve application: one FastAPI ingress deployment.

``alray.service.app:build_app`` is the import path a RayService (``serveConfigV2``) uses; its
``args`` are :class:`~alray.service.settings.ServiceSettings` fields (never tokens: replicas
read ``ALRAY_API_TOKENS`` from their environment, and the builder passes only digests and
scopes).
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from ray import serve
from ray.serve import Application

from alray.service.settings import ServiceSettings

__all__ = ["AlrayService", "build_app"]

log = logging.getLogger(__name__)


@serve.deployment(name="alray", ray_actor_options={"num_cpus": 0.25},
                  max_ongoing_requests=256, health_check_period_s=5)
@serve.ingress()
class AlrayService:
    """The ingress replica: holds a :class:`~alray.service.state.ServiceState`.

    Args:
        settings: ServiceSettings fields (merged over the replica's ``ALRAY_*`` environment).
        tokens: SHA-256 digest -> scope of the accepted bearer tokens.
    """

    def __init__(self, settings: dict[str, Any], tokens: dict[str, str]):
        from alray.service.state import ServiceState

        self.state = ServiceState(ServiceSettings(**settings), tokens)
        self._watch: asyncio.Task | None = None

    async def __serve_build_asgi_app__(self):
        from alray.service.api import create_api

        self._watch = asyncio.get_running_loop().create_task(self._watch_runner())
        return create_api(self.state)

    async def _watch_runner(self) -> None:
        """Start (or find) the job runner and the label writer at once, then keep the runner
        alive: a new runner resumes unfinished jobs, even when no request comes in."""
        warmed = False
        while True:
            try:
                await asyncio.to_thread(self.state.runner)
                if not warmed:
                    await self._warm_writer()
                    warmed = True
            except Exception:  # logged; retried on the next tick
                log.exception("job runner / label writer check failed")
            await asyncio.sleep(5)

    async def _warm_writer(self) -> None:
        """Start the label writer and open the known projects' label tables in it, so the
        first label batch does not wait for a worker process and LanceDB to start."""
        names = await asyncio.to_thread(self.state.catalog.project_names)
        uris = []
        for n in names:
            try:
                uris.append((await asyncio.to_thread(self.state.project, n)).cfg.storage.uri)
            except Exception:  # one broken project must not keep the others cold
                log.warning("project %r cannot be opened; not warming its label table", n)
        await self.state.writer().warm.remote(uris)

    def check_health(self) -> None:
        """Serve health check: the catalog is readable."""
        self.state.catalog.project_names()


def build_app(args: dict[str, Any] | None = None) -> Application:
    """Build the Serve application.

    Args:
        args: ServiceSettings fields, e.g. ``{"service_root": "s3://bucket/alray"}``; the
            bearer tokens come from ``ALRAY_API_TOKENS`` (and ``ALRAY_METRICS_TOKEN``) where
            this runs, hashed here. ``alray serve CONFIG`` also passes ``config_dir`` (the
            data root when ``ALRAY_DATA_ROOTS`` is unset) and ``bind_url``.

    Raises:
        ValueError: no API tokens are configured (the service refuses to run open).
    """
    args = dict(args or {})
    settings = ServiceSettings(**args)
    tokens = settings.token_scopes()
    if not any(s != "metrics" for s in tokens.values()):
        raise ValueError("ALRAY_API_TOKENS is empty: set it to one or more comma-separated "
                         "bearer tokens (a mounted secret in Kubernetes)")
    args.pop("api_tokens", None)
    args.pop("metrics_token", None)
    args["service_root"] = settings.service_root
    args["data_roots"] = settings.data_roots  # the builder's view wins over the replicas'
    args["max_body_bytes"] = settings.max_body_bytes
    if settings.config_dir:
        args["config_dir"] = os.path.realpath(settings.config_dir)
    if not settings.data_roots and not settings.config_dir:
        log.warning("neither ALRAY_DATA_ROOTS nor a config folder is set: projects cannot be "
                    "created over HTTP")
    return AlrayService.bind(args, tokens)
