"""Which reports the companion job reads: a chest radiograph's, by its linked study or its exam line."""

import re

import pytest
from pydicom.uid import ExplicitVRLittleEndian

from dicom_node.config import ReportScopeSettings, ReportSettings
from dicom_node.dicom.header import InstanceRecord
from dicom_node.jobs.reports import ReportJob
from dicom_node.reports.queries import reports
from dicom_node.reports.record import ReportRecord
from dicom_node.reports.scope import LinkedSeries, is_chest_radiograph
from dicom_node.store.reports import record_report
from slm.engine import load_engine
from tests.support.dicom_factory import cr_instance, ct_instance, mr_instance, sr_instance

SCOPE = ReportScopeSettings()
SR = LinkedSeries("SR", None, "Radiology report")


@pytest.mark.parametrize(
    "series, text, chest",
    [
        ([LinkedSeries("CR", "CHEST", "PA"), SR], "", True),
        ([LinkedSeries("DX", None, "Thorax ap liegend")], "", True),  # the description says it
        ([LinkedSeries("MR", "HEAD", "t1_mprage"), SR], "Findings: acute infarct.", False),
        ([LinkedSeries("CT", "CHEST", "Thorax 1mm")], "", False),  # a chest CT is not a radiograph
        ([LinkedSeries("CR", "HAND", "PA")], "", False),
        ([SR], "EXAM: XR CHEST PA AND LATERAL\nThe lungs are clear.", True),  # only the report: its exam line
        ([], "Examination: MRI BRAIN WITHOUT CONTRAST\nAcute infarct.", False),
        ([], "EXAM: CT CHEST\nNo nodule.", False),
        ([], "The lungs are clear.", True),  # nothing says which exam: reports.scope.unknown (label)
    ],
)
def test_a_report_is_a_chest_radiographs_by_its_study_else_its_exam_line(series, text, chest):
    assert is_chest_radiograph(series, text, SCOPE) is chest


def test_unknown_skip_leaves_reports_that_say_nothing_unread():
    assert not is_chest_radiograph([], "The lungs are clear.", SCOPE.model_copy(update={"unknown": "skip"}))


class Recording:
    """The tiny engine, keeping every text the job asked it to label."""

    def __init__(self, engine):
        self.engine, self.version, self.labeled = engine, engine.version, []

    def label(self, texts):
        self.labeled += texts
        return self.engine.label(texts)

    def impression(self, texts):
        return self.engine.impression(texts)


def test_the_job_labels_chest_radiograph_reports_and_marks_the_others_not_applicable(store, tiny_model_folder, caplog):
    caplog.set_level("INFO", logger="dicom_node.jobs.reports")
    for ds in (mr_instance("t1_mprage", study_uid="1.1"), sr_instance(study_uid="1.1"),
               cr_instance(study_uid="2.2"), ct_instance(study_uid="3.3")):
        store.record_instance(InstanceRecord.from_dataset(ds, ExplicitVRLittleEndian))
    texts = {
        "1.1": "Acute infarct in the left MCA territory.",  # the brain MRI the issue saw labeled "No Finding"
        "2.2": "Small left pleural effusion.",
        "3.3": "Head CT: no haemorrhage.",
        "4.4": "EXAM: MRI BRAIN\nNo acute abnormality.",  # no study received: the exam line decides
        "5.5": "EXAM: XR CHEST 2 VIEWS\nCardiomegaly.",
    }
    for uid, findings in texts.items():
        record_report(store, ReportRecord(f"text:{uid}", "text", uid, None, findings=findings))
    model = Recording(load_engine(str(tiny_model_folder), impression_max_tokens=4))

    assert ReportJob(store, model, ReportSettings()).run_until_done().processed == 5

    status = {view.study_uid: (view.status, view.labels is None) for view in reports(store.engine)}
    assert status == {
        "1.1": ("not applicable", True), "2.2": ("processed", False), "3.3": ("not applicable", True),
        "4.4": ("not applicable", True), "5.5": ("processed", False),
    }
    assert len(model.labeled) == 2  # the model never saw the others
    assert re.search(rf"report job \(model {model.version}\): 5 of 5 claimed reports processed \(3 not chest "
                     r"radiographs: not applicable\), 0 failed, in \d+\.\d s", caplog.text)
    assert any("pleural effusion" in text for text in model.labeled) and any("Cardiomegaly" in text for text in model.labeled)
