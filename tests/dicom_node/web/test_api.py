"""The REST API with FastAPI's TestClient on a real SQLite store: every endpoint, every role, bad input."""

from __future__ import annotations

import logging
import time

import pytest

from dicom_node.store import mappings
from dicom_node.store.exchange import correction_rows
from tests.support.web import ACCESSION, PASSWORD, STUDY, USERS, VERSIONS

ROLES = ("viewer", "reviewer", "admin")
NAME_OF = {role: name for name, role in USERS.items()}

# (method, path, JSON body, the least role that may)
ENDPOINTS = [
    ("GET", "/api/v1/me", None, "viewer"),
    ("GET", "/api/v1/mappings", None, "viewer"),
    ("GET", "/api/v1/mappings?label=T2&below=0.7&unreviewed=true&search=flair&since=2020-01-01&sort=confidence", None,
     "viewer"),
    ("POST", "/api/v1/mappings/correct", {"description": "AX T2 FLAIR", "label": "FLAIR", "note": "dark fluid"},
     "reviewer"),
    ("POST", "/api/v1/mappings/confirm", {"description": "T1 MPRAGE SAG"}, "reviewer"),
    ("GET", f"/api/v1/studies?study_uid={STUDY}", None, "viewer"),
    ("GET", f"/api/v1/studies?accession={ACCESSION}", None, "viewer"),
    ("GET", f"/api/v1/series/{STUDY}.10", None, "viewer"),
    ("GET", "/api/v1/reports", None, "viewer"),
    ("GET", "/api/v1/reports/1", None, "viewer"),
    ("GET", "/api/v1/models", None, "viewer"),
    ("POST", "/api/v1/models/promote", {"version": VERSIONS[0]}, "admin"),
    ("POST", "/api/v1/models/rollback", {}, "admin"),
    ("POST", "/api/v1/models/retrain", None, "admin"),
    ("GET", "/api/v1/models/retrain", None, "viewer"),
    ("GET", "/api/v1/node", None, "viewer"),
    ("GET", "/metrics", None, "viewer"),
    ("DELETE", "/api/v1/token", None, "viewer"),
]


@pytest.mark.parametrize("method, path, body, least", ENDPOINTS, ids=[f"{m} {p}" for m, p, _b, _r in ENDPOINTS])
def test_every_endpoint_answers_each_role_as_its_rights_say(web, method, path, body, least):
    for role in ROLES:
        response = web.client.request(method, path, json=body, headers=web.headers(NAME_OF[role]))
        if ROLES.index(role) >= ROLES.index(least):
            assert 200 <= response.status_code < 300, (role, response.text)
        else:
            assert response.status_code == 403, role
            assert f"needs the {least} role" in response.json()["detail"]


@pytest.mark.parametrize("method, path, body, _least", ENDPOINTS, ids=[f"{m} {p}" for m, p, _b, _r in ENDPOINTS])
def test_nothing_is_answered_without_a_login(web, method, path, body, _least):
    response = web.client.request(method, path, json=body)
    assert response.status_code == 401
    assert "log in" in response.json()["detail"]
    bad = web.client.request(method, path, json=body, headers={"Authorization": "Bearer not-a-token"})
    assert bad.status_code == 401


def test_open_endpoints_are_health_and_login_only(web):
    assert web.client.get("/healthz").json() == {"status": "ok"}
    assert web.client.get("/readyz").json() == {"status": "ready", "problems": []}
    paths = web.client.get("/openapi.json").json()["paths"]
    covered = {path.split("?")[0] for _m, path, _b, _r in ENDPOINTS}
    for path in paths:
        concrete = path.replace("{series_uid}", f"{STUDY}.10").replace("{report_id}", "1")
        assert concrete in covered | {"/healthz", "/readyz", "/api/v1/token"}, f"{path} has no role test"


def test_a_viewer_cannot_correct_and_the_mapping_stays(web):
    response = web.client.post("/api/v1/mappings/correct", json={"description": "AX T2 FLAIR", "label": "FLAIR"},
                               headers=web.headers("vic"))
    assert response.status_code == 403
    assert "needs the reviewer role; user 'vic' is a viewer" in response.json()["detail"]
    assert correction_rows(web.store) == []


def test_a_correction_is_the_logged_in_users_and_relabels_the_studys_series(web):
    rita = web.headers("rita")
    before = web.client.get(f"/api/v1/studies?study_uid={STUDY}", headers=rita).json()["series"]
    assert [s["label"] for s in before] == ["T1", "T2", "DWI"]
    response = web.client.post(
        "/api/v1/mappings/correct", json={"description": "AX T2 FLAIR", "label": "FLAIR", "note": "dark fluid"},
        headers=rita,
    )
    assert response.json() == {"description": "AX T2 FLAIR", "label": "FLAIR", "who": "rita"}
    [row] = correction_rows(web.store)
    assert (row["who"], row["label"], row["note"]) == ("rita", "FLAIR", "dark fluid")
    after = web.client.get(f"/api/v1/studies?accession={ACCESSION}", headers=rita).json()["series"]
    assert [(s["label"], s["source"]) for s in after] == [("T1", "model"), ("FLAIR", "corrected"), ("DWI", "model")]
    other = web.client.get(f"/api/v1/series/{STUDY[:-1]}2.20", headers=rita).json()  # the other spelling
    assert (other["description"], other["label"]) == ("ax_t2_flair", "FLAIR")


def test_confirm_marks_reviewed_with_the_label_shown(web):
    rita = web.headers("rita")
    response = web.client.post("/api/v1/mappings/confirm", json={"description": "ep2d_diff"}, headers=rita)
    assert response.json()["label"] == "DWI"
    unreviewed = web.client.get("/api/v1/mappings?unreviewed=true", headers=rita).json()["items"]
    assert "ep2d_diff" not in [m["description"] for m in unreviewed]
    queued = web.client.post("/api/v1/mappings/confirm", json={"description": "localizer"}, headers=rita)
    assert queued.status_code == 409
    assert "not harmonized yet" in queued.json()["detail"]


def test_mappings_are_the_review_queue_first_and_filter_sort_and_page_as_the_cli(web):
    vic = web.headers("vic")
    queue = web.client.get("/api/v1/mappings", headers=vic).json()
    assert queue["total"] == 5
    # unreviewed and least confident first; the queued description has no confidence and comes last
    assert [m["description"] for m in queue["items"]] == [
        "ep2d_diff", "AX T2 FLAIR", "ax_t2_flair", "T1 MPRAGE SAG", "localizer",
    ]
    first = queue["items"][0]
    assert first["series_count"] == 1
    assert first["examples"] == [
        {"study_uid": STUDY, "series_uid": f"{STUDY}.12", "series_number": 3, "modality": "MR",
         "manufacturer": "SIEMENS"}
    ]
    cli = mappings.mappings(web.store.engine, label="T2", below=0.6)
    api = web.client.get("/api/v1/mappings?label=T2&below=0.6", headers=vic).json()["items"]
    assert [m["description"] for m in api] == [m.description for m in cli] == ["AX T2 FLAIR"]
    by_text = web.client.get("/api/v1/mappings?search=FLAIR&sort=description&order=desc", headers=vic).json()
    assert [m["description"] for m in by_text["items"]] == ["ax_t2_flair", "AX T2 FLAIR"]
    page_two = web.client.get("/api/v1/mappings?per_page=2&page=2", headers=vic).json()
    assert (page_two["pages"], [m["description"] for m in page_two["items"]]) == (3, ["ax_t2_flair", "T1 MPRAGE SAG"])
    none_since = web.client.get("/api/v1/mappings?since=2999-01-01", headers=vic).json()
    assert none_since["total"] == 0


def test_reports_show_the_generated_impression_beside_the_reports_own(web):
    vic = web.headers("vic")
    [listed] = web.client.get("/api/v1/reports", headers=vic).json()["items"]
    assert (listed["study_uid"], listed["status"]) == (STUDY, "waiting")
    shown = web.client.get(f"/api/v1/reports/{listed['id']}", headers=vic).json()
    assert shown["sections"]["impression"] == "Left pleural effusion."
    assert shown["generated_impression"] is None and shown["labels"] is None
    assert shown["linked_study"] == {"study_uid": STUDY, "series_count": 3}
    assert "patient_id" not in shown and "patient_name" not in shown


def test_a_reviewer_cannot_promote_an_admin_promotes_and_rolls_back(web):
    rita, ann = web.headers("rita"), web.headers("ann")
    refused = web.client.post("/api/v1/models/promote", json={"version": VERSIONS[0]}, headers=rita)
    assert refused.status_code == 403

    def active():
        listed = web.client.get("/api/v1/models", headers=rita).json()
        return [v["version"] for v in listed["versions"] if v["active"]], listed["running"]

    assert active() == ([VERSIONS[1]], VERSIONS[1])
    assert web.client.post("/api/v1/models/rollback", json={"note": "worse"}, headers=ann).json() == {"active": VERSIONS[0]}
    assert active() == ([VERSIONS[0]], VERSIONS[0])
    promoted = web.client.post("/api/v1/models/promote", json={"version": VERSIONS[1][:10]}, headers=ann)
    assert promoted.json() == {"active": VERSIONS[1], "changed": True}
    assert active() == ([VERSIONS[1]], VERSIONS[1])


def test_a_retraining_started_from_the_api_reports_its_progress_and_failure(web):
    ann = web.headers("ann")
    started = web.client.post("/api/v1/models/retrain", headers=ann)
    assert started.status_code == 202
    assert started.json()["who"] == "ann"
    web.app.state.web.retraining.join(30)
    progress = web.client.get("/api/v1/models/retrain", headers=ann).json()
    assert progress["state"] == "failed"
    assert "no-recipe.yaml" in progress["error"]  # the settings name a recipe that does not exist


@pytest.mark.parametrize(
    "method, path, body, status, words",
    [
        ("POST", "/api/v1/mappings/correct", {"description": "AX T2 FLAIR", "label": "T3"}, 422, ["label", "T1"]),
        ("POST", "/api/v1/mappings/correct", {"description": "nothing like it", "label": "T1"}, 404,
         ["no series description 'nothing like it'"]),
        ("POST", "/api/v1/mappings/correct", {"description": "", "label": "T1"}, 422, ["description"]),
        ("POST", "/api/v1/mappings/correct", {"description": "a\u0000b", "label": "T1"}, 422, ["NUL"]),
        ("POST", "/api/v1/mappings/correct", {"label": "T1"}, 422, ["description", "missing"]),
        ("POST", "/api/v1/mappings/confirm", {"description": "nothing like it"}, 404, ["no series description"]),
        ("GET", "/api/v1/mappings?below=2", None, 422, ["below", "less than or equal to 1"]),
        ("GET", "/api/v1/mappings?since=yesterday", None, 422, ["since"]),
        ("GET", "/api/v1/mappings?sort=colour", None, 422, ["sort"]),
        ("GET", "/api/v1/mappings?page=0", None, 422, ["page"]),
        ("GET", "/api/v1/studies", None, 400, ["give one of study_uid or accession"]),
        ("GET", "/api/v1/studies?study_uid=9.9&accession=X", None, 400, ["give one of"]),
        ("GET", "/api/v1/studies?study_uid=9.9", None, 404, ["no study 9.9"]),
        ("GET", "/api/v1/series/abc", None, 422, ["series_uid"]),
        ("GET", "/api/v1/series/9.9", None, 404, ["no series 9.9"]),
        ("GET", "/api/v1/reports/abc", None, 422, ["report_id"]),
        ("GET", "/api/v1/reports/99999999999999999999999", None, 422, ["report_id"]),
        ("GET", "/api/v1/reports/999", None, 404, ["no report 999"]),
        ("GET", "/api/v1/reports?label=Broken", None, 422, ["label"]),
        ("POST", "/api/v1/models/promote", {"version": "nope"}, 404, ["no model version 'nope'"]),
        ("POST", "/api/v1/models/promote", {"version": "model-"}, 404, ["begins 2 versions"]),
    ],
)
def test_bad_input_is_a_4xx_with_a_message(web, method, path, body, status, words):
    response = web.client.request(method, path, json=body, headers=web.headers("ann"))
    assert response.status_code == status, response.text
    for word in words:
        assert word in response.text


def test_malformed_json_is_a_422(web):
    response = web.client.post("/api/v1/mappings/correct", content=b"{not json", headers={
        **web.headers("ann"), "Content-Type": "application/json"})
    assert response.status_code == 422
    assert "JSON" in response.text


def test_nothing_to_roll_back_to_is_a_409(web):
    ann = web.headers("ann")
    assert web.client.post("/api/v1/models/rollback", json={}, headers=ann).status_code == 200
    again = web.client.post("/api/v1/models/rollback", json={}, headers=ann)
    assert again.status_code == 409
    assert "nothing to roll back to" in again.json()["detail"]


def test_failed_logins_are_logged_without_the_password_and_then_must_wait(web, caplog):
    caplog.set_level(logging.INFO, logger="dicom_node.web")
    limit = web.settings.web.max_failed_logins
    for _ in range(limit):
        wrong = web.client.post("/api/v1/token", json={"name": "rita", "password": "guess-123456"})
        assert wrong.status_code == 401
        assert wrong.json()["detail"] == "wrong user name or password"
    locked = web.client.post("/api/v1/token", json={"name": "rita", "password": PASSWORD})
    assert locked.status_code == 429
    assert "too many failed logins" in locked.json()["detail"]
    assert int(locked.headers["Retry-After"]) > 0
    assert web.client.post("/api/v1/token", json={"name": "ann", "password": PASSWORD}).status_code == 200
    assert f"failed login for user 'rita' from testclient ({limit} within" in caplog.text
    assert "guess-123456" not in caplog.text and PASSWORD not in caplog.text


def test_an_unknown_user_gets_the_same_answer_as_a_wrong_password(web):
    response = web.client.post("/api/v1/token", json={"name": "nobody", "password": "whatever-1"})
    assert (response.status_code, response.json()["detail"]) == (401, "wrong user name or password")


def test_logging_out_ends_the_token(web):
    headers = web.headers("vic")
    assert web.client.delete("/api/v1/token", headers=headers).status_code == 204
    assert web.client.get("/api/v1/me", headers=headers).status_code == 401


def test_metrics_take_http_basic_for_a_scraper(web):
    assert web.client.get("/metrics", auth=("vic", PASSWORD)).status_code == 200
    assert web.client.get("/metrics", auth=("vic", "wrong-password")).status_code == 401


def test_the_login_limiter_forgets_failures_once_they_age_out():
    from dicom_node.web.auth import LoginLimiter

    limiter = LoginLimiter(max_failures=2, lockout_seconds=0.2)
    assert [limiter.failed("rita", "10.0.0.1") for _ in range(2)] == [1, 2]
    assert 0 < limiter.wait_seconds("rita", "10.0.0.1") <= 0.2
    assert limiter.wait_seconds("rita", "10.0.0.2") == 0  # another address is not held up
    time.sleep(0.25)
    assert limiter.wait_seconds("rita", "10.0.0.1") == 0
    assert limiter.failed("rita", "10.0.0.1") == 1


def test_a_report_that_is_not_a_chest_radiographs_is_shown_as_not_applicable(tmp_path, tiny_model_folder):
    from fastapi.testclient import TestClient

    from dicom_node.config import ReportSettings
    from dicom_node.jobs.reports import ReportJob
    from dicom_node.reports.record import ReportRecord
    from dicom_node.store.database import Store
    from dicom_node.store.reports import record_report
    from dicom_node.store.users import add_user, open_session
    from dicom_node.web.app import make_app
    from slm.engine import load_engine
    from tests.support.web import web_settings

    settings = web_settings(tmp_path)
    store = Store(settings.store.url)
    add_user(store, "vic", "viewer", PASSWORD)
    headers = {"Authorization": f"Bearer {open_session(store, 'vic', 'api', hours=1)[0]}"}
    record_report(store, ReportRecord("text:brain", "text", "9.9", None, findings="EXAM: MRI BRAIN\nAcute infarct."))
    model = load_engine(str(tiny_model_folder), impression_max_tokens=4)
    assert ReportJob(store, model, ReportSettings()).run_until_done().processed == 1

    client = TestClient(make_app(settings, store))
    [listed] = client.get("/api/v1/reports", headers=headers).json()["items"]
    assert (listed["status"], listed["findings"], listed["impression"]) == ("not applicable", "", "")  # none invented
    shown = client.get(f"/api/v1/reports/{listed['id']}", headers=headers).json()
    assert shown["labels"] is None and shown["status"] == "not applicable"
    store.close()
