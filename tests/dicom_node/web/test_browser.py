"""The pages in headless Chromium (Debian's chromium, driven by Playwright), on a real node that received a
study over DICOM: log in, filter the low-confidence queue, correct a mapping, see the study's series
relabeled, read the report, roll back a model, look at the node. A screenshot of each page goes to
$SLMNODE_SCREENSHOTS (docs/screenshots/ for the README) or the test's own folder.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from dicom_node.dicom.sender import send_files
from dicom_node.models import registry
from dicom_node.node import Node
from dicom_node.store.users import add_user
from slm.harmonizer import Prediction
from tests.support.dicom_factory import brain_study, sr_instance, write_files
from tests.support.helpers_dicom import TIMEOUT, node_settings
from tests.support.web import PASSWORD, VERSIONS

CHROMIUM = os.environ.get("SLMNODE_CHROMIUM", "/usr/bin/chromium")
sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed")
pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).is_file() and not shutil.which(CHROMIUM),
    reason=f"no Chromium at {CHROMIUM} (apt-get install chromium; or set SLMNODE_CHROMIUM)",
)


class UnsureHarmonizer:
    """The brain study's descriptions as a model might map them: sure and right, or unsure and wrong."""

    version = "unsure-test-1"
    ANSWERS = {
        "t1_mprage_sag_p2_iso": ("T1", 0.98),
        "t2_tse_tra_512": ("T2", 0.95),
        "t2_tirm_tra_dark-fluid": ("T2", 0.55),  # a FLAIR, which a reviewer corrects
        "ep2d_diff_3scan_trace_p2": ("DWI", 0.91),
        "ep2d_diff_3scan_trace_p2_ADC": ("DWI", 0.62),
        "swi_tra_p2": ("SWI", 0.97),
    }

    def harmonize(self, descriptions, known=None):
        return [Prediction(*self.ANSWERS.get(text, ("Other", 0.5)), self.version) for text in descriptions]


@pytest.fixture
def running_node(tmp_path):
    study = brain_study(images_per_series=1, patient="Browser")
    report = sr_instance(study_uid=study[0].StudyInstanceUID)
    settings = node_settings(tmp_path, web={"enabled": True, "port": 0})
    with Node(settings, UnsureHarmonizer()) as node:
        for name, role in (("rita", "reviewer"), ("ann", "admin")):
            add_user(node.store, name, role, PASSWORD)
        for version in VERSIONS:
            registry.register(node.store, version, f"/models/{version}", metrics={
                "figures": {"harmonization_accuracy": 0.95, "corrections_accuracy": 1.0},
                "compared_with": {"version": "embedded", "figures": {"harmonization_accuracy": 0.94,
                                                                     "corrections_accuracy": 0.5}},
                "gate": {"passed": True, "reasons": []},
            })
            registry.promote(node.store, version, "ann")
        paths = write_files(study + [report], tmp_path / "in")
        assert [o.status for o in send_files("127.0.0.1", node.port, paths, calling_aet="CT_SCANNER",
                                             timeout=TIMEOUT)] == [0] * len(paths)
        yield node, study[0].StudyInstanceUID


@pytest.fixture
def page(tmp_path):
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.set_default_timeout(TIMEOUT * 1000)
        yield page
        browser.close()


@pytest.mark.slow  # a node, a study over DICOM and a browser: some 10 s
def test_review_in_a_browser(running_node, page, tmp_path):
    node, study_uid = running_node
    shots = Path(os.environ.get("SLMNODE_SCREENSHOTS") or tmp_path / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    expect = sync_api.expect
    base = node.web.url

    # Harmonized by the worker within a moment of arriving.
    page.goto(f"{base}/mappings")
    expect(page).to_have_url(f"{base}/login?next=/mappings")
    page.fill("input[name=name]", "ann")
    page.fill("input[name=password]", PASSWORD)
    page.screenshot(path=shots / "login.png")
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#who")).to_have_text("ann (admin)")
    for _ in range(50):
        if page.locator("tr[data-description]").count() == 7 and "queued" not in page.inner_text("table.mappings"):
            break
        page.wait_for_timeout(200)
        page.reload()

    # The low-confidence queue: the two the model was unsure of, least sure first (the report's SR series is
    # not an MR series, so it is not harmonized and not in the queue).
    page.fill("input[name=below]", "0.8")
    page.check("input[name=unreviewed]")
    page.get_by_role("button", name="Filter").click()
    rows = page.locator("tr[data-description]")
    expect(rows).to_have_count(2)
    assert [rows.nth(i).get_attribute("data-description") for i in range(2)] == [
        "t2_tirm_tra_dark-fluid", "ep2d_diff_3scan_trace_p2_ADC",
    ]
    page.screenshot(path=shots / "mappings.png", full_page=True)

    # Correct the FLAIR the model called T2, with a note; it leaves the unreviewed queue.
    flair = page.locator('tr[data-description="t2_tirm_tra_dark-fluid"]')
    flair.locator("select[name=label]").select_option("FLAIR")
    flair.locator("input[name=note]").fill("dark fluid: FLAIR")
    flair.get_by_role("button", name="Correct").click()
    expect(page.locator(".message")).to_have_text("'t2_tirm_tra_dark-fluid' is now FLAIR")
    expect(rows).to_have_count(1)

    # The study's series, relabeled.
    page.goto(f"{base}/studies")
    page.fill("input[name=study_uid]", study_uid)
    page.get_by_role("button", name="Show").click()
    series = page.locator("table.series tbody tr", has_text="t2_tirm_tra_dark-fluid")
    expect(series.locator(".label")).to_have_text("FLAIR")
    expect(series).to_contain_text("corrected")
    page.screenshot(path=shots / "studies.png", full_page=True)

    # The SR's report, waiting for the report job (this node has no report model).
    page.get_by_role("link", name="Reports", exact=True).click()
    expect(page.locator("table.reports tbody tr")).to_have_count(1)
    page.screenshot(path=shots / "reports.png", full_page=True)
    page.locator("table.reports tbody tr a").first.click()
    expect(page.locator("h1")).to_contain_text("Report")
    expect(page.locator("body")).to_contain_text("No acute intracranial abnormality.")
    page.screenshot(path=shots / "report.png", full_page=True)

    # Roll back: the version before runs again.
    page.get_by_role("link", name="Models", exact=True).click()
    expect(page.locator("#active")).to_have_text(VERSIONS[1])
    page.click("#rollback")
    expect(page.locator(".message")).to_have_text(f"rolled back: {VERSIONS[0]} is active again")
    expect(page.locator("#active")).to_have_text(VERSIONS[0])
    assert registry.active(node.store).version == VERSIONS[0]
    page.screenshot(path=shots / "models.png", full_page=True)

    # The node: what runs, what came in, from whom.
    page.get_by_role("link", name="Node", exact=True).click()
    expect(page.locator("body")).to_contain_text(f"on 127.0.0.1:{node.port}")
    expect(page.locator("body")).to_contain_text("CT_SCANNER")
    expect(page.locator("#queue-harmonization")).to_have_text("0")
    page.screenshot(path=shots / "node.png", full_page=True)
    assert "Browser" not in page.content()  # the patient's name is nowhere on the pages
