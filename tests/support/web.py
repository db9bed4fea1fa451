"""A store with something to review, and users of each role, for the web tests (API, pages, browser, fuzzing).

Two studies share a FLAIR the model called T2 (two spellings of it), a DWI it was unsure of, a T1 it
was sure of and a localizer still queued; one report linked by accession; two model versions, the
second promoted over the first, so a rollback has somewhere to go.
"""

from __future__ import annotations

from pathlib import Path

from dicom_node.config import Settings
from dicom_node.models import registry
from dicom_node.reports.record import ReportRecord
from dicom_node.store import mappings
from dicom_node.store.database import Store
from dicom_node.store.reports import record_report
from dicom_node.store.users import add_user, open_session
from slm.harmonizer import Prediction
from tests.support.helpers_dicom import record

PASSWORD = "correct horse 1"
USERS = {"vic": "viewer", "rita": "reviewer", "ann": "admin"}  # name -> role
STUDY, OTHER_STUDY = "1.2.826.0.1.3680043.8.498.1", "1.2.826.0.1.3680043.8.498.2"
ACCESSION = "ACC" + STUDY[-8:].replace(".", "")  # as dicom_factory gives it
MODEL_LABELS = {  # description -> (the model's label, confidence); "localizer" stays queued
    "T1 MPRAGE SAG": ("T1", 0.97),
    "AX T2 FLAIR": ("T2", 0.55),
    "ax_t2_flair": ("T2", 0.62),
    "ep2d_diff": ("DWI", 0.41),
}
SERIES = [  # (study, series UID suffix, description)
    (STUDY, "10", "T1 MPRAGE SAG"),
    (STUDY, "11", "AX T2 FLAIR"),
    (STUDY, "12", "ep2d_diff"),
    (OTHER_STUDY, "20", "ax_t2_flair"),
    (OTHER_STUDY, "21", "localizer"),
]
VERSIONS = ("model-aaaa1111", "model-bbbb2222")


def web_settings(tmp_path: Path, **sections) -> Settings:
    """Settings with the store and the models folder in tmp_path; the web server on 127.0.0.1, any port."""
    return Settings.model_validate(
        {
            "store": {"url": f"sqlite:///{tmp_path / 'web.sqlite'}"},
            "retraining": {"models_folder": str(tmp_path / "models"), "recipe": str(tmp_path / "no-recipe.yaml")},
            "web": {"port": 0, **sections.pop("web", {})},
            **sections,
        }
    )


def seed(store: Store) -> dict[str, str]:
    """Fill the store; an API token of each user, by name."""
    for name, role in USERS.items():
        add_user(store, name, role, PASSWORD)
    for number, (study, suffix, description) in enumerate(SERIES):
        store.record_instance(record(f"{study}.{suffix}.1", f"{study}.{suffix}", study, description))
    texts = list(MODEL_LABELS)
    mappings.save_predictions(store, texts, [Prediction(label, confidence, VERSIONS[1])
                                             for label, confidence in MODEL_LABELS.values()])
    record_report(store, ReportRecord("file:report-1", "text", None, ACCESSION, findings="Small left effusion.",
                                      impression="Left pleural effusion."))
    for version in VERSIONS:
        registry.register(store, version, f"/models/{version}", metrics={"figures": {"harmonization_accuracy": 0.9}})
        registry.promote(store, version, "ann")
    return {name: open_session(store, name, "api", hours=24)[0] for name in USERS}
