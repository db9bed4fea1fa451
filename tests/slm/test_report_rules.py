"""Phrasings the rule labeler reads since the error analysis on the train reports (issue 14).

Each case is a wording that was frequent among the rule labeler's misses on labels_train.csv,
written here as a fresh sentence: the rules are the hint a shipped model copies, so what they
miss the model misses too.
"""

import pytest

from slm.report_rules import RuleLabeler
from slm.tasks import NO_FINDING, report_text


def yes(findings: str) -> set[str]:
    """The keys the labeler answers Yes for a report with these findings."""
    labels = RuleLabeler().label([report_text({"findings": findings, "impression": ""})])[0]
    return {key for key, value in labels.items() if value == "Yes"}


@pytest.mark.parametrize(
    "sentence, finding",
    [
        # Edema: redacted vessels, venous hypertension, vascularity and wider spans
        ("The pulmonary XXXX are engorged.", "Edema"),
        ("Cardiomegaly and pulmonary venous hypertension.", "Edema"),
        ("The pulmonary vascularity is prominent.", "Edema"),
        ("Stable prominence of the central pulmonary vasculature.", "Edema"),
        # Lung lesion: cavities, nodules said not to be calcified, a nodule beside hilar calcifications
        ("Stable cavity in the right apex.", "Lung Lesion"),
        ("Possible apical cavitation.", "Lung Lesion"),
        ("A 9 mm nodule that is not definitively calcified.", "Lung Lesion"),
        ("Right infrahilar nodular density.", "Lung Lesion"),
        ("Hilar calcifications and a dense nodule in the lingula.", "Lung Lesion"),
        # Pneumonia: pneumonitis
        ("Patchy opacity consistent with pneumonitis.", "Pneumonia"),
        # Pneumothorax: a pleural air collection; effusion: hydropneumothorax
        ("Small left apical pleural air collection.", "Pneumothorax"),
        ("Large left hydropneumothorax.", "Pleural Effusion"),
        # Pleural other: scarring far from the blunted angle it explains
        ("Blunting of the right costophrenic sulcus which could be a small effusion versus scarring.", "Pleural Other"),
        # Fracture: vertebral height loss with the word height redacted
        ("Mild anterior XXXX loss of several vertebral bodies.", "Fracture"),
        # Enlarged cardiomediastinum: a lobulated paratracheal contour
        ("Lobulated contour to the right paratracheal stripe.", "Enlarged Cardiomediastinum"),
        # Support devices named by kind
        ("Prosthetic right shoulder.", "Support Devices"),
        ("A humeral intramedullary XXXX is noted.", "Support Devices"),
        ("TIPS shunt visualized.", "Support Devices"),
        ("There is an IVC XXXX in place.", "Support Devices"),
        # second pass (rule-labeler-3): phrasing families among the misses left on the train reports
        # a redacted device said to be in position; fusion hardware redacted
        ("The left chest XXXX is in good position.", "Support Devices"),
        ("Right chest XXXX in the SVC.", "Support Devices"),
        ("Lumbar fusion XXXX partially imaged.", "Support Devices"),
        # "not well characterized" is a hedge, not a negation
        ("Lower thoracic XXXX deformity, not well characterized.", "Fracture"),
        # "not" before a verb in -ing says what the finding does not do
        ("Hazy opacity at the left base, not obscuring the hemidiaphragm.", "Lung Opacity"),
        # scarring after a comma behind the pleural sinus; "has not [changed]" redacted
        ("Obliteration of the left pleural sinus, likely scarring.", "Pleural Other"),
        ("A calcified pleural plaque on the left has not XXXX since the prior study.", "Pleural Other"),
        # some of it is left
        ("Nearly completely resolved left apical pneumothorax.", "Pneumothorax"),
        # the calcifications are the hilum's, not the nodule's
        ("Dense left lower lobe nodule and left hilar calcifications.", "Lung Lesion"),
        ("Stable prominence of the left cardiac silhouette.", "Cardiomegaly"),
        # the aortopulmonary window, redacted
        ("Round density in the AP XXXX.", "Enlarged Cardiomediastinum"),
        ("Pleural densities on the left which may represent loculated fluid.", "Pleural Effusion"),
        ("Mitral valve XXXX in place.", "Support Devices"),  # a redacted valve replacement
        # "if" makes a condition only up to its comma
        ("If pain localizes there, suspect a nondisplaced rib fracture.", "Fracture"),
        # rule-labeler-6: a device whose tip is out of view is there
        ("Enteric tube courses below the diaphragm, the tip not included on the image.", "Support Devices"),
        ("PICC line, tip not well seen.", "Support Devices"),
        ("The distal tip coursing into the stomach and not included on the study.", "Support Devices"),
        # typing slips in a finding's own word, British shorthand and a query mark
        ("Small left pleural effusoin.", "Pleural Effusion"),
        ("Pulmonary edmea.", "Edema"),
        ("Old # right 7th and 8th ribs.", "Fracture"),
        ("?early RLL PNA.", "Pneumonia"),
        ("Osteoporotic collapse of L1.", "Fracture"),
        ("Left mid zone nodule, not present on the 2021 film.", "Lung Lesion"),  # new, not absent
        ("Effusions resolved, atelectasis persists.", "Atelectasis"),
        ("No focal consolidation is seen other than patchy atelectasis at the right base.", "Atelectasis"),
        ("Without evidence of effusion or pneumothorax, the right chest tube remains in place.", "Support Devices"),
        # a structured report's headings, and dictation heard wrong
        ("HEART: Mildly enlarged. LUNGS: Clear.", "Cardiomegaly"),
        ("Pulmonary vasculature: Prominent.", "Edema"),
        ("Mild cardio megaly is stable.", "Cardiomegaly"),
        ("Calcified plural plaques bilaterally.", "Pleural Other"),
        ("Left basilar atelectisis, improved.", "Atelectasis"),
        ("Patchy left basilar opacity, although superimposed infection cannot be excluded.", "Lung Opacity"),
        ("Cardiothoracic ratio is increased.", "Cardiomegaly"),
        ("Bulky mediastinum on this AP film.", "Enlarged Cardiomediastinum"),
        ("Impression: ? early LVF.", "Edema"),
        ("Wet read: lines ok, no PTX.", "Support Devices"),
        ("Stable compression XXXX of the L1 vertebral body.", "Fracture"),
        ("Tracheostomy XXXX in place.", "Support Devices"),
        ("Bilateral pulmonary edma with cardiomegaly.", "Edema"),  # a slip in a short word
        # a "not" or "no" that does not negate, and a negation's scope
        ("The right pleural effusion is not large.", "Pleural Effusion"),
        ("The fracture of the right clavicle is not displaced.", "Fracture"),
        ("There has been no interval resolution of the left lower lobe consolidation.", "Consolidation"),
        ("Bibasilar atelectasis has not cleared.", "Atelectasis"),
        ("Neither the small right effusion nor the right basilar atelectasis has changed.", "Atelectasis"),
        ("Mild cardiomegaly, no edema, small right effusion, and no pneumothorax.", "Pleural Effusion"),
        ("Following removal of the left chest tube there is a new small left apical pneumothorax.", "Pneumothorax"),
        ("No evidence of pneumothorax following placement of the left subclavian central line.", "Support Devices"),
        ("To document resolution of the right lower lobe pneumonia.", "Pneumonia"),
    ],
)
def test_phrasings_found_in_train_reports_are_yes(sentence, finding):
    found = yes(sentence)
    assert finding in found and NO_FINDING not in found


@pytest.mark.parametrize(
    "sentence, finding",
    [
        ("Mild nonconsolidating right lower lobe airspace disease.", "Consolidation"),
        ("No noncalcified nodule.", "Lung Lesion"),
        ("Scattered small nodules throughout the lungs most likely represent calcified granulomas.", "Lung Lesion"),
        ("The chest tube tip projects outside the thoracic cavity.", "Lung Lesion"),
        ("Curvilinear densities over the heart.", "Lung Opacity"),
        ("Blunting of the costophrenic sulcus, effusion versus scarring.", "Lung Opacity"),
        # second pass (rule-labeler-3)
        ("Mild obscuration of the left cardiac XXXX.", "Support Devices"),  # the heart's border
        ("Fracture of the most inferior fixation screw.", "Fracture"),  # a broken device
        ("The lowest screw of the fixation XXXX is fractured.", "Fracture"),
        ("Deformity of the left clavicle from remote XXXX.", "Fracture"),  # deformity alone
        ("Patchy opacity at the right base, XXXX secondary to overlying soft tissue.", "Lung Opacity"),
        ("A XXXX density on the frontal view suggests left atrial enlargement.", "Lung Opacity"),
        ("Crowded interstitial markings from low lung volumes.", "Lung Opacity"),
        ("Nodular opacity at the left base, XXXX to represent confluence of vessels.", "Lung Opacity"),
        ("Nodular opacity at the left base, XXXX to represent confluence of vessels.", "Lung Lesion"),
        ("Chest wall soft tissue density compatible with known breast carcinoma.", "Lung Lesion"),
        ("Consolidation, atelectasis and blunting in the right lower lobe have cleared.", "Consolidation"),
        ("Consolidation, atelectasis and blunting in the right lower lobe have cleared.", "Atelectasis"),
        ("Increased density behind the lower mediastinum, due to a hiatal hernia.", "Enlarged Cardiomediastinum"),
        ("Round opacity measuring 3 cm in diameter within the anterior mediastinum.", "Lung Opacity"),
        # third pass (rule-labeler-4): rubric cases seen among the dev misses
        ("A wedge-shaped opacity has developed in the right upper lobe.", "Fracture"),  # a lung shadow's shape
        ("Scattered XXXX densities throughout the chest from prior gunshot wound.", "Lung Opacity"),  # metal
        ("Central vascular markings are mildly prominent.", "Lung Opacity"),  # vessels: edema, not markings
        # rule-labeler-6
        ("Osteoporotic collapse of L1.", "Atelectasis"),  # a vertebra's collapse
        ("Left basal atelectasis has re-expanded.", "Atelectasis"),
        ("Clinical details: SOB, ?CHF. Heart size normal, no oedema.", "Edema"),  # the history, in the text
        ("Reason: post line insertion, ?pneumothorax. No pneumothorax.", "Pneumothorax"),
        ("Loop recorder module in the left chest.", "Lung Lesion"),  # a word one slip from "nodule" is not read
        ("PNEUMOTHORAX: Resolved. CHEST TUBE: Removed.", "Pneumothorax"),
        ("PNEUMOTHORAX: Resolved. CHEST TUBE: Removed.", "Support Devices"),
        ("Devices: None. Lungs: Clear.", "Support Devices"),
        ("The endotracheal tube and right IJ catheter have all been removed.", "Support Devices"),
        ("Pneumothorax is excluded on this expiratory film.", "Pneumothorax"),
        ("Skin fold mimics a pneumothorax.", "Pneumothorax"),
        ("Surgical staple line following wedge resection.", "Fracture"),
        ("The heart is enlarged but the mediastinum is normal.", "Enlarged Cardiomediastinum"),
        ("Interval removal of the left chest tube, the right PICC, and the nasogastric tube.", "Support Devices"),
        ("Prior film showed a right pneumothorax, which is not present today.", "Pneumothorax"),
        ("Lack of pneumothorax on the right.", "Pneumothorax"),
        ("Prelim: neg for PNA, effusion, PTX.", "Pneumonia"),
        ("Tiny right apical pneumothorax after chest tube removal.", "Support Devices"),
        ("If there is concern for fracture consider rib series.", "Fracture"),  # "there is" after "if"
    ],
)
def test_look_alikes_are_no(sentence, finding):
    assert finding not in yes(sentence)
