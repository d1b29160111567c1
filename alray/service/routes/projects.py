"""Projects: create one from a config, read one back."""

from __future__ import annotations

from fastapi import APIRouter, status

from alray.config import ProjectConfig, _absolute
from alray.service.deps import Auth, ProjectDep, StateDep
from alray.service.errors import Invalid
from alray.service.schemas import JobPublic, ProjectPublic
from alray.service.settings import PROJECT_NAME
from alray.service.state import Project

router = APIRouter(prefix="/v1/projects", tags=["projects"], dependencies=[Auth])


def project_public(p: Project) -> ProjectPublic:
    store = p.store
    frames: dict[str, int] = {}
    if store.has_frames():
        t = store.read_frames(["split", "status"])
        split, stat = t["split"].to_pylist(), t["status"].to_pylist()
        for s in ("pool", "val", "test"):
            frames[s] = split.count(s)
        pool = [st for sp, st in zip(split, stat, strict=True) if sp == "pool"]
        for s in ("unlabeled", "selected", "labeled", "failed"):
            frames[s] = pool.count(s)
    rounds = store.rounds()
    return ProjectPublic(
        name=p.name, storage_uri=store.uri, created_at=p.created_at,
        config=p.cfg.model_dump(mode="json"), classes=p.classes(), frames=frames,
        rounds=len(rounds), latest_round=rounds[-1]["round"] if rounds else None,
        latest_state=rounds[-1]["state"] if rounds else None)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=ProjectPublic,
             responses={409: {"description": "name exists"}, 422: {}})
def create_project(state: StateDep, body: ProjectConfig) -> ProjectPublic:
    """Create a project from a project config; its store lives under the service root."""
    if not PROJECT_NAME.match(body.name):
        raise Invalid(f"name={body.name!r}: use 1-64 letters, digits, '_' or '-', starting "
                      "with a letter or digit")
    try:
        pool_uri = _absolute(body.pool.uri)
    except (ValueError, OSError) as err:
        raise Invalid(f"pool.uri={body.pool.uri!r}: {err}") from None
    cfg = body.with_overrides(**{"pool.uri": pool_uri,
                                 "storage.uri": state.catalog.default_storage_uri(body.name)})
    return project_public(state.create_project(cfg))


@router.get("/{project}", response_model=ProjectPublic, responses={404: {}})
def get_project(p: ProjectDep) -> ProjectPublic:
    """A project: config, classes, frame counts and its latest round."""
    return project_public(p)


@router.post("/{project}/ingest", status_code=status.HTTP_202_ACCEPTED,
             response_model=JobPublic, responses={404: {}, 409: {}})
def start_ingest(state: StateDep, p: ProjectDep) -> JobPublic:
    """Ingest the project's pool in the background (idempotent); poll GET /v1/jobs/{id}."""
    return JobPublic(**state.submit(p.name, "ingest", {}))
