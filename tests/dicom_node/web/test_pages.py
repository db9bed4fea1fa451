"""The review pages with FastAPI's TestClient on a real store: login, CSRF, roles, the forms' effects."""

from __future__ import annotations

import re

import pytest

from tests.support.web import PASSWORD, STUDY, VERSIONS


def log_in(web, name):
    response = web.client.post("/login", data={"name": name, "password": PASSWORD, "next": "/mappings"},
                               follow_redirects=False)
    assert response.status_code == 303
    cookie = response.cookies.get("slmnode_session")
    assert "httponly" in response.headers["set-cookie"].lower() and "samesite=strict" in response.headers["set-cookie"].lower()
    return cookie


def csrf(page: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', page).group(1)


@pytest.mark.parametrize("path", ["/", "/mappings", "/studies", "/reports", "/reports/1", "/models", "/node"])
def test_pages_send_a_visitor_without_a_session_to_the_login(web, path):
    response = web.client.get(path, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == f"/login?next={path}"


def test_a_wrong_password_shows_the_login_again(web):
    response = web.client.post("/login", data={"name": "vic", "password": "wrong-one!"})
    assert response.status_code == 401
    assert "wrong user name or password" in response.text
    assert "slmnode_session" not in response.cookies


@pytest.mark.parametrize("path, words", [
    ("/mappings", ["ep2d_diff", "0.41", "Confirm DWI"]),
    (f"/studies?study_uid={STUDY}", ["AX T2 FLAIR", "T1 MPRAGE SAG", f"{STUDY}.12"]),
    ("/reports", ["Left pleural effusion", "waiting"]),
    ("/reports/1", ["Left pleural effusion.", "not processed yet", "not labeled yet"]),
    ("/models", [VERSIONS[0], VERSIONS[1], "active", "Roll back"]),
    ("/node", ["SLMNODE", "not running in this process", "Descriptions to harmonize"]),
])
def test_each_page_shows_what_the_store_holds(web, path, words):
    log_in(web, "ann")
    page = web.client.get(path)
    assert page.status_code == 200
    for word in words:
        assert word in page.text


def test_the_queue_comes_first_and_filters_apply(web):
    log_in(web, "vic")
    page = web.client.get("/mappings").text
    order = [page.index(text) for text in ("ep2d_diff</td>", "AX T2 FLAIR</td>", "T1 MPRAGE SAG</td>")]
    assert order == sorted(order)
    assert "reviewers correct" in page and "/mappings/correct" not in page  # a viewer gets no forms
    filtered = web.client.get("/mappings?label=T2&below=0.6&unreviewed=1").text
    assert "AX T2 FLAIR" in filtered and "ep2d_diff" not in filtered and "ax_t2_flair" not in filtered
    bad = web.client.get("/mappings?below=lots")
    assert bad.status_code == 400 and "confidence below: &#39;lots&#39; is not valid" in bad.text


def test_a_reviewer_corrects_from_the_page_and_the_study_is_relabeled(web):
    log_in(web, "rita")
    page = web.client.get("/mappings").text
    response = web.client.post("/mappings/correct", data={
        "csrf": csrf(page), "description": "AX T2 FLAIR", "label": "FLAIR", "note": "dark fluid", "back": "/mappings",
    })
    assert "&#39;AX T2 FLAIR&#39; is now FLAIR" in response.text
    study = web.client.get(f"/studies?study_uid={STUDY}").text
    row = re.search(r"AX T2 FLAIR</td>\s*<td><span[^>]*>(\w+)</span></td><td>(\w+)", study)
    assert row.groups() == ("FLAIR", "corrected")


def test_a_form_without_the_sessions_csrf_token_is_refused(web):
    log_in(web, "rita")
    for token in ("", "forged"):
        response = web.client.post("/mappings/correct", data={
            "csrf": token, "description": "AX T2 FLAIR", "label": "FLAIR"})
        assert response.status_code == 403
        assert "reload the page" in response.text
    assert "FLAIR" not in web.client.get(f"/studies?study_uid={STUDY}").text.split("AX T2 FLAIR")[1][:80]


def test_roles_hold_on_the_pages_too(web):
    log_in(web, "vic")
    token = csrf(web.client.get("/mappings").text)
    refused = web.client.post("/mappings/correct", data={"csrf": token, "description": "AX T2 FLAIR", "label": "FLAIR"})
    assert refused.status_code == 403 and "needs the reviewer role" in refused.text
    log_in(web, "rita")
    token = csrf(web.client.get("/models").text)
    assert "Roll back" not in web.client.get("/models").text
    assert web.client.post("/models/rollback", data={"csrf": token}).status_code == 403


def test_an_admin_rolls_back_and_promotes_from_the_models_page(web):
    log_in(web, "ann")
    token = csrf(web.client.get("/models").text)
    rolled = web.client.post("/models/rollback", data={"csrf": token})
    assert f"rolled back: {VERSIONS[0]} is active again" in rolled.text
    assert re.search(rf'id="active">{VERSIONS[0]}<', rolled.text)
    promoted = web.client.post("/models/promote", data={"csrf": token, "version": VERSIONS[1]})
    assert re.search(rf'id="active">{VERSIONS[1]}<', promoted.text)


def test_logging_out_ends_the_session(web):
    log_in(web, "vic")
    token = csrf(web.client.get("/mappings").text)
    assert web.client.post("/logout", data={"csrf": token}, follow_redirects=False).status_code == 303
    assert web.client.get("/mappings", follow_redirects=False).status_code == 303


def test_the_login_page_sends_back_only_within_the_site(web):
    response = web.client.post("/login", data={"name": "vic", "password": PASSWORD, "next": "//evil.example/x"},
                               follow_redirects=False)
    assert response.headers["location"].startswith("/mappings?")


def test_a_refused_form_is_a_page_and_the_api_stays_json(web):
    log_in(web, "vic")
    refused = web.client.post("/mappings/confirm", data={"csrf": "forged", "description": "ep2d_diff"})
    assert refused.status_code == 403 and refused.headers["content-type"].startswith("text/html")
    assert "reload the page" in refused.text
    missing = web.client.get("/nowhere")
    assert missing.status_code == 404 and "<h1>404</h1>" in missing.text
    api = web.client.get("/api/v1/reports/999", headers=web.headers("vic"))
    assert api.headers["content-type"] == "application/json" and api.json() == {"detail": "no report 999"}
