"""The review pages, rendered on the server (Jinja2): mappings, studies, reports, models, node; login and logout.

A page needs a session cookie (log in at /login); each form carries the session's CSRF token and
posts back here, which redirects to the page it came from with a message. The only script
(static/app.js) polls a retraining's progress.
"""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from dicom_node.models import registry
from dicom_node.store import corrections, users
from dicom_node.store.users import Login
from dicom_node.web import views
from dicom_node.web.auth import SESSION_COOKIE, log_in, page_action, page_user
from dicom_node.web.context import WebContext, context
from slm.tasks import LABEL_KEYS, REPORT_SECTIONS, SERIES_LABELS

templates = Jinja2Templates(directory=Path(__file__).parent / "templates")
router = APIRouter(include_in_schema=False)


def _render(
    request: Request, template: str, login: Login | None, status_code: int = 200, headers=None, **values
) -> HTMLResponse:
    return templates.TemplateResponse(
        request, template, {"login": login, "message": request.query_params.get("message"), **values},
        status_code=status_code, headers=headers,
    )


def _back(to: str, message: str) -> RedirectResponse:
    """303 to the page a form came from (a path of this site only), with a message for it."""
    if not to.startswith("/") or to.startswith("//"):
        to = "/mappings"
    joiner = "&" if "?" in to else "?"
    return RedirectResponse(f"{to}{joiner}{urlencode({'message': message})}", status_code=303)


def error_page(request: Request, exc) -> HTMLResponse:
    """A refused form or a page that is not there, as a page (the API answers the same in JSON)."""
    return _render(request, "error.html", None, status_code=exc.status_code, error=exc.detail,
                   status=exc.status_code, headers=getattr(exc, "headers", None))


class BadFilter(ValueError):
    pass


def _parse(value: str, kind, what: str):
    """A filter field of a page's form: empty means not given; a bad value is shown on the page."""
    value = value.strip()
    if not value:
        return None
    try:
        return kind(value)
    except ValueError:
        raise BadFilter(f"{what}: {value!r} is not valid") from None


# ---- login ----------------------------------------------------------------------------------------


@router.get("/login")
def login_page(request: Request, next: str = "/mappings") -> HTMLResponse:
    return _render(request, "login.html", None, next=next)


@router.post("/login")
def login(request: Request, name: str = Form(""), password: str = Form(""), next: str = Form("/mappings")):
    try:
        token, _expires, _login = log_in(request, name, password, "page")
    except HTTPException as exc:
        return _render(request, "login.html", None, status_code=exc.status_code, next=next, error=exc.detail, name=name)
    response = _back(next, f"logged in as {name}")
    web: WebContext = context(request)
    response.set_cookie(
        SESSION_COOKIE, token, max_age=int(web.settings.web.session_hours * 3600), httponly=True, samesite="strict",
        secure=bool(web.settings.web.tls.certificate),
    )
    return response


@router.post("/logout")
def logout(request: Request, _: Login = Depends(page_action("viewer"))):
    users.close_session(context(request).store, request.cookies[SESSION_COOKIE])
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response


@router.get("/")
def home(_: Login = Depends(page_user)):
    return RedirectResponse("/mappings", status_code=303)


# ---- mappings -------------------------------------------------------------------------------------


@router.get("/mappings")
def mappings_page(
    request: Request,
    login: Login = Depends(page_user),
    web: WebContext = Depends(context),
    label: str = "",
    below: str = "",
    search: str = "",
    since: str = "",
    unreviewed: str = "",
    sort: str = "queue",
    order: str = "asc",
    page: str = "1",
):
    """The review queue (unreviewed, least confident first) unless sorted otherwise."""
    try:
        if label and label not in SERIES_LABELS:
            raise BadFilter(f"label: {label!r} is not one of {', '.join(SERIES_LABELS)}")
        confidence = _parse(below, float, "confidence below")
        if confidence is not None and not 0 <= confidence <= 1:
            raise BadFilter("confidence below: give a number from 0 to 1")
        filters = views.MappingFilters(
            label or None, confidence, search.strip() or None, _parse(since, datetime.fromisoformat, "first seen since"),
            bool(unreviewed),
        )
        if sort not in views.MAPPING_SORTS:
            raise BadFilter(f"sort: {sort!r} is not one of {', '.join(views.MAPPING_SORTS)}")
        number = _parse(page, int, "page") or 1
        result = views.mapping_page(web.store, web.settings, filters, sort, order == "desc", max(1, number), 50)
        error = None
    except BadFilter as exc:
        result, error = {"total": 0, "page": 1, "pages": 1, "items": []}, str(exc)
    query = {k: v for k, v in request.query_params.items() if k not in ("page", "message")}
    here = {k: v for k, v in request.query_params.items() if k != "message"}  # where a form sends back to
    return _render(
        request, "mappings.html", login, status_code=400 if error else 200, result=result, error=error,
        labels=SERIES_LABELS, sorts=views.MAPPING_SORTS, form=dict(request.query_params), query=query,
        back="/mappings" + ("?" + urlencode(here) if here else ""),
    )


@router.post("/mappings/correct")
def correct_form(
    request: Request,
    description: str = Form(...),
    label: str = Form(...),
    note: str = Form(""),
    back: str = Form("/mappings"),
    login: Login = Depends(page_action("reviewer")),
):
    if label not in SERIES_LABELS:
        return _back(back, f"{label!r} is not a label")
    try:
        corrections.correct(context(request).store, description, label, who=login.name, note=note.strip() or None)
    except corrections.UnknownDescription as exc:
        return _back(back, str(exc))
    return _back(back, f"{description!r} is now {label}")


@router.post("/mappings/confirm")
def confirm_form(
    request: Request,
    description: str = Form(...),
    back: str = Form("/mappings"),
    login: Login = Depends(page_action("reviewer")),
):
    try:
        label = corrections.confirm(context(request).store, description, who=login.name)
    except (corrections.UnknownDescription, corrections.NotMappedYet) as exc:
        return _back(back, str(exc))
    return _back(back, f"{description!r} confirmed as {label}")


# ---- studies and reports ---------------------------------------------------------------------------


@router.get("/studies")
def studies_page(
    request: Request, login: Login = Depends(page_user), web: WebContext = Depends(context),
    study_uid: str = "", accession: str = "",
):
    study_uid, accession = study_uid.strip(), accession.strip()
    found = None  # nothing asked yet
    if study_uid:
        found = views.study(web.store, web.settings, study_uid=study_uid)
    elif accession:
        found = views.study(web.store, web.settings, accession=accession)
    return _render(request, "studies.html", login, series=found, study_uid=study_uid, accession=accession)


@router.get("/reports")
def reports_page(
    request: Request, login: Login = Depends(page_user), web: WebContext = Depends(context),
    study: str = "", accession: str = "", label: str = "", since: str = "", page: str = "1",
):
    try:
        if label and label not in LABEL_KEYS:
            raise BadFilter(f"finding: {label!r} is not one of {', '.join(LABEL_KEYS)}")
        result = views.report_page(
            web.store, web.node, max(1, _parse(page, int, "page") or 1), 50, study_uid=study.strip() or None,
            accession=accession.strip() or None, label=label or None, since=_parse(since, date.fromisoformat, "since"),
        )
        error = None
    except BadFilter as exc:
        result, error = {"total": 0, "page": 1, "pages": 1, "items": []}, str(exc)
    query = {k: v for k, v in request.query_params.items() if k not in ("page", "message")}
    return _render(request, "reports.html", login, status_code=400 if error else 200, result=result, error=error,
                   findings=LABEL_KEYS, form=dict(request.query_params), query=query)


@router.get("/reports/{report_id}")
def one_report_page(request: Request, report_id: int, login: Login = Depends(page_user), web: WebContext = Depends(context)):
    found = views.report(web.store, report_id, web.node) if 0 < report_id < 2**62 else None
    if found is None:
        return _render(request, "report.html", login, status_code=404, report=None, report_id=report_id)
    return _render(request, "report.html", login, report=found, sections=REPORT_SECTIONS, findings=LABEL_KEYS)


# ---- models ---------------------------------------------------------------------------------------


@router.get("/models")
def models_page(request: Request, login: Login = Depends(page_user), web: WebContext = Depends(context)):
    return _render(
        request, "models.html", login, versions=views.model_versions(web.store, web.settings),
        running=views.running_version(web.store, web.node), retraining=web.retraining.status(),
    )


@router.get("/models/retrain/progress")
def retrain_progress(_: Login = Depends(page_user), web: WebContext = Depends(context)):
    """For static/app.js: the retraining's progress, with the page's session."""
    return JSONResponse(web.retraining.status())


@router.post("/models/promote")
def promote_form(request: Request, version: str = Form(...), login: Login = Depends(page_action("admin"))):
    store = context(request).store
    try:
        registry.promote(store, registry.get(store, version).version, login.name, "from the models page")
    except registry.RegistryError as exc:
        return _back("/models", str(exc))
    return _back("/models", f"{version} is now active")


@router.post("/models/rollback")
def rollback_form(request: Request, login: Login = Depends(page_action("admin"))):
    try:
        version = registry.rollback(context(request).store, login.name, "from the models page")
    except registry.RegistryError as exc:
        return _back("/models", str(exc))
    return _back("/models", f"rolled back: {version} is active again")


@router.post("/models/retrain")
def retrain_form(request: Request, login: Login = Depends(page_action("admin"))):
    started = context(request).retraining.start(login.name)
    return _back("/models", "retraining started" if started else "a retraining is already running")


# ---- the node -------------------------------------------------------------------------------------


@router.get("/node")
def node_page(request: Request, login: Login = Depends(page_user), web: WebContext = Depends(context)):
    return _render(request, "node.html", login, node=views.node_status(web.settings, web.store, web.node))
