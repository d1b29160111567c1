"""The HTTP face of alray: a Ray Serve application with a FastAPI ingress.

``alray.service.app:build_app`` builds it; :class:`~alray.service.settings.ServiceSettings`
configures it from ``ALRAY_*`` environment variables. Heavy imports (Ray Serve, FastAPI) are
deferred to the submodules.
"""

__all__ = ["app", "settings"]
