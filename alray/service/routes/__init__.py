"""One router per resource."""

from alray.service.routes import frames, health, jobs, labels, projects, rounds

__all__ = ["frames", "health", "jobs", "labels", "projects", "rounds"]
