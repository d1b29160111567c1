"""Projects: create one from a config, read one back."""

from __future__ import annotations

from fastapi import APIRouter, status

from alray.config import ProjectConfig
from alray.service.deps import AdminScope, ProjectDep, ReadScope, StateDep
from alray.service.errors import Invalid
from alray.service.routes.jobs import job_public
from alray.service.schemas import JobPublic, ProjectPublic
from alray.service.settings import PROJECT_NAME
from alray.service.state import Project, ServiceState
from alray.storage.schema import FrameStatus, Split
from alray.storage.store import frame_filter

router = APIRouter(prefix="/v1/projects", tags=["projects"])

#: Config fields that hold a location (shown relative to their data root).
_LOCATIONS = (("pool", "uri"), ("storage", "uri"), ("model", "weights_uri"))


def project_public(state: ServiceState, p: Project) -> ProjectPublic:
    store = p.store
    frames: dict[str, int] = {}
    if p.has_frames():  # indexed counts (BITMAP on split/status): no frame is read
        for s in Split:
            frames[s.value] = store.count_frames(frame_filter(split=s))
        for s in FrameStatus:
            frames[s.value] = store.count_status(s, split=Split.POOL)
    rounds = store.rounds()
    config = p.cfg.model_dump(mode="json")
    for section, key in _LOCATIONS:  # never an absolute path of the server
        config[section][key] = state.roots.show(config[section][key])
    return ProjectPublic(
        name=p.name, storage_path=state.roots.show(store.uri), created_at=p.created_at,
        config=config, classes=p.classes(), frames=frames,
        rounds=len(rounds), latest_round=rounds[-1]["round"] if rounds else None,
        latest_state=rounds[-1]["state"] if rounds else None)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=ProjectPublic,
             responses={403: {"description": "a location outside ALRAY_DATA_ROOTS, or not "
                              "an admin token"}, 409: {"description": "name exists"}, 422: {}})
def create_project(state: StateDep, body: ProjectConfig, _: AdminScope) -> ProjectPublic:
    """Create a project from a project config; its store lives under the service root.

    ``pool.uri`` and ``model.weights_uri`` must lie under ALRAY_DATA_ROOTS (a relative path
    is taken relative to the first local root); anything else is refused with 403.
    """
    if not PROJECT_NAME.fullmatch(body.name):
        raise Invalid(f"name={body.name!r}: use 1-64 letters, digits, '_' or '-', starting "
                      "with a letter or digit")
    over = {"pool.uri": state.roots.check(body.pool.uri, "pool.uri"),
            "storage.uri": state.catalog.default_storage_uri(body.name)}
    if body.model.weights_uri:
        over["model.weights_uri"] = state.roots.check(body.model.weights_uri,
                                                      "model.weights_uri")
    cfg = body.with_overrides(**over)
    return project_public(state, state.create_project(cfg))


@router.get("/{project}", response_model=ProjectPublic, responses={404: {}})
def get_project(state: StateDep, p: ProjectDep, _: ReadScope) -> ProjectPublic:
    """A project: config, classes, frame counts and its latest round."""
    return project_public(state, p)


@router.post("/{project}/ingest", status_code=status.HTTP_202_ACCEPTED,
             response_model=JobPublic, responses={403: {}, 404: {}, 409: {}})
def start_ingest(state: StateDep, p: ProjectDep, _: AdminScope) -> JobPublic:
    """Ingest the project's pool in the background (idempotent); poll GET /v1/jobs/{id}."""
    return job_public(state, state.submit(p.name, "ingest", {}))

