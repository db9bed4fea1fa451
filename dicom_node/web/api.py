"""The REST API (JSON) under /api/v1: what the pages show and do, for scripts and integration engines.

Every route needs a bearer token (POST /api/v1/token) of a role: viewer reads, reviewer also corrects
and confirms mappings, admin also promotes, rolls back and retrains. Bad input is answered 4xx with
a message saying what is wrong; the OpenAPI document is at /openapi.json, browsable at /docs.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from pydantic import AfterValidator, BaseModel, Field

from dicom_node.models import registry
from dicom_node.store import corrections
from dicom_node.store.times import iso
from dicom_node.store.users import Login, close_session
from dicom_node.web import views
from dicom_node.web.auth import _bearer, api_user, log_in
from dicom_node.web.context import WebContext, context
from slm.tasks import LABEL_KEYS, SERIES_LABELS


def _storable(text: str) -> str:
    """Text the store can keep: no NUL and no lone surrogate (neither can be a DICOM or HL7 value)."""
    if "\x00" in text or re.search("[\ud800-\udfff]", text):
        raise ValueError("text must not contain NUL characters or lone surrogates")
    return text


Text = Annotated[str, AfterValidator(_storable)]
Description = Annotated[Text, Field(min_length=1, max_length=10_000, description="a stored Series Description")]
Note = Annotated[Text | None, Field(max_length=10_000)]
Page = Annotated[int, Query(ge=1, le=1_000_000)]
PerPage = Annotated[int, Query(ge=1, le=500)]
RowId = Annotated[int, Path(ge=1, le=2**62)]

router = APIRouter(prefix="/api/v1")
viewer, reviewer, admin = api_user("viewer"), api_user("reviewer"), api_user("admin")


class Credentials(BaseModel):
    name: Text = Field(min_length=1, max_length=200)
    password: Text = Field(min_length=1, max_length=1000)


class Token(BaseModel):
    token: str
    token_type: Literal["bearer"] = "bearer"
    expires_at: str = Field(description="UTC, ISO 8601")
    role: str


@router.post("/token", tags=["login"], responses={401: {"description": "wrong name or password"},
                                                  429: {"description": "too many failed logins"}})
def token(request: Request, credentials: Credentials) -> Token:
    """Log in: a token for `Authorization: Bearer <token>`, valid web.session_hours."""
    value, expires, login = log_in(request, credentials.name, credentials.password, "api")
    return Token(token=value, expires_at=iso(expires), role=login.role)


@router.delete("/token", tags=["login"], status_code=204)
def log_out(web: WebContext = Depends(context), _: Login = Depends(viewer), credentials=Depends(_bearer)) -> None:
    """End this token's login."""
    close_session(web.store, credentials.credentials)


@router.get("/me", tags=["login"])
def me(login: Login = Depends(viewer)) -> dict:
    return {"name": login.name, "role": login.role}


# ---- mappings -----------------------------------------------------------------------------------


@router.get("/mappings", tags=["mappings"])
def list_mappings(
    web: WebContext = Depends(context),
    _: Login = Depends(viewer),
    label: Literal[SERIES_LABELS] | None = None,  # type: ignore[valid-type]
    below: Annotated[float | None, Query(ge=0, le=1, description="model confidence below this")] = None,
    search: Annotated[Text | None, Query(max_length=1000, description="descriptions containing this, any case")] = None,
    since: Annotated[datetime | None, Query(description="first seen on or after (UTC)")] = None,
    unreviewed: bool = False,
    sort: Literal[views.MAPPING_SORTS] = "queue",  # type: ignore[valid-type]
    order: Literal["asc", "desc"] = "asc",
    page: Page = 1,
    per_page: PerPage = 50,
) -> dict:
    """Series descriptions with their labels, filtered as `slmnode mappings` filters; sort `queue` (the default)
    puts unreviewed, low-confidence ones first."""
    filters = views.MappingFilters(label, below, search, since, unreviewed)
    return views.mapping_page(web.store, web.settings, filters, sort, order == "desc", page, per_page)


class CorrectionRequest(BaseModel):
    description: Description
    label: Literal[SERIES_LABELS]  # type: ignore[valid-type]
    note: Note = None


class ConfirmRequest(BaseModel):
    description: Description
    note: Note = None


@router.post("/mappings/correct", tags=["mappings"], responses={404: {"description": "no such description"}})
def correct(body: CorrectionRequest, web: WebContext = Depends(context), login: Login = Depends(reviewer)) -> dict:
    """Set a description's label (every spelling of it); recorded as the logged-in user's."""
    try:
        corrections.correct(web.store, body.description, body.label, who=login.name, note=body.note)
    except corrections.UnknownDescription as exc:
        raise HTTPException(404, str(exc)) from None
    return {"description": body.description, "label": body.label, "who": login.name}


@router.post("/mappings/confirm", tags=["mappings"], responses={404: {"description": "no such description"},
                                                               409: {"description": "not harmonized yet"}})
def confirm(body: ConfirmRequest, web: WebContext = Depends(context), login: Login = Depends(reviewer)) -> dict:
    """Agree with the label shown: marks the mapping reviewed."""
    try:
        label = corrections.confirm(web.store, body.description, who=login.name, note=body.note)
    except corrections.UnknownDescription as exc:
        raise HTTPException(404, str(exc)) from None
    except corrections.NotMappedYet as exc:
        raise HTTPException(409, str(exc)) from None
    return {"description": body.description, "label": label, "who": login.name}


# ---- studies, series, reports --------------------------------------------------------------------

UID = Annotated[Text, Path(min_length=1, max_length=64, pattern=r"^[0-9.]+$")]


@router.get("/studies", tags=["studies"], responses={400: {"description": "neither or both given"},
                                                      404: {"description": "no such study"}})
def study(
    web: WebContext = Depends(context),
    _: Login = Depends(viewer),
    study_uid: Annotated[Text | None, Query(max_length=64)] = None,
    accession: Annotated[Text | None, Query(max_length=64)] = None,
) -> dict:
    """A study's series with their labels, by Study Instance UID or by Accession Number (give one)."""
    if (study_uid is None) == (accession is None):
        raise HTTPException(400, "give one of study_uid or accession")
    found = views.study(web.store, web.settings, study_uid=study_uid, accession=accession)
    if not found:
        raise HTTPException(404, f"no study {'with accession ' + accession if accession else study_uid} in the store")
    return {"study_uid": found[0]["study_uid"], "series": found}


@router.get("/series/{series_uid}", tags=["studies"], responses={404: {"description": "no such series"}})
def series(series_uid: UID, web: WebContext = Depends(context), _: Login = Depends(viewer)) -> dict:
    found = views.series(web.store, web.settings, series_uid)
    if not found:
        raise HTTPException(404, f"no series {series_uid} in the store")
    return found[0]


@router.get("/reports", tags=["reports"])
def list_reports(
    web: WebContext = Depends(context),
    _: Login = Depends(viewer),
    study_uid: Annotated[Text | None, Query(max_length=64)] = None,
    accession: Annotated[Text | None, Query(max_length=64)] = None,
    label: Literal[LABEL_KEYS] | None = None,  # type: ignore[valid-type]
    since: date | None = None,
    unprocessed: bool = False,
    page: Page = 1,
    per_page: PerPage = 50,
) -> dict:
    """Reports, newest first, with the linked study, positive findings and generated impression."""
    return views.report_page(web.store, web.node, page, per_page, study_uid=study_uid, accession=accession,
                             label=label, since=since, unprocessed=unprocessed)


@router.get("/reports/{report_id}", tags=["reports"], responses={404: {"description": "no such report"}})
def show_report(report_id: RowId, web: WebContext = Depends(context), _: Login = Depends(viewer)) -> dict:
    """One report: its sections, labels, the generated impression beside its own, the model version."""
    found = views.report(web.store, report_id, web.node)
    if found is None:
        raise HTTPException(404, f"no report {report_id}")
    return found


# ---- model versions ------------------------------------------------------------------------------


@router.get("/models", tags=["models"])
def list_models(web: WebContext = Depends(context), _: Login = Depends(viewer)) -> dict:
    """Registered versions, newest first, with figures and the gate's table; the active one marked."""
    return {"running": views.running_version(web.store, web.node), "versions": views.model_versions(web.store, web.settings)}


class PromoteRequest(BaseModel):
    version: Text = Field(min_length=1, max_length=200, description="a version, or a beginning only it has")
    note: Note = None


class RollbackRequest(BaseModel):
    note: Note = None


@router.post("/models/promote", tags=["models"], responses={404: {"description": "no such version"}})
def promote(body: PromoteRequest, web: WebContext = Depends(context), login: Login = Depends(admin)) -> dict:
    """Make a version the active one; a running node switches within retraining.follow_seconds."""
    try:
        chosen = registry.get(web.store, body.version)
        changed = registry.promote(web.store, chosen.version, login.name, body.note)
    except registry.RegistryError as exc:
        raise HTTPException(404, str(exc)) from None
    return {"active": chosen.version, "changed": changed}


@router.post("/models/rollback", tags=["models"], responses={409: {"description": "nothing to roll back to"}})
def rollback(body: RollbackRequest, web: WebContext = Depends(context), login: Login = Depends(admin)) -> dict:
    """Undo the latest promotion: the version active before it becomes active again."""
    try:
        version = registry.rollback(web.store, login.name, body.note)
    except registry.RegistryError as exc:
        raise HTTPException(409, str(exc)) from None
    return {"active": version}


@router.post("/models/retrain", tags=["models"], status_code=202,
             responses={409: {"description": "a retraining is already running"}})
def retrain(web: WebContext = Depends(context), login: Login = Depends(admin)) -> dict:
    """Start `slmnode models retrain` in the background; GET shows its progress."""
    if not web.retraining.start(login.name):
        raise HTTPException(409, "a retraining is already running")
    return web.retraining.status()


@router.get("/models/retrain", tags=["models"])
def retrain_progress(web: WebContext = Depends(context), _: Login = Depends(viewer)) -> dict:
    """The latest retraining started from the web: state (idle, running, done, failed), phase, outcome."""
    return web.retraining.status()


# ---- the node -----------------------------------------------------------------------------------


@router.get("/node", tags=["node"])
def node(web: WebContext = Depends(context), _: Login = Depends(viewer)) -> dict:
    """What runs: AE, port, TLS, store, model; ingest counters, queue depths, recent associations."""
    return views.node_status(web.settings, web.store, web.node)
