"""The rule labeler: CheXpert findings read off a chest X-ray report by mention phrases and negation.

It follows the CheXpert labeler's idea with the rules of the Open-i rubric (shared/data/openi/RUBRIC.md):
only what is seen on this exam counts (the INDICATION and COMPARISON lines are skipped), uncertain
mentions count as Yes, No Finding is Yes exactly when none of the 13 findings is. It is the baseline the
model must beat, and its reading is part of a hinted model's input (slm/hints.py), so it lives with
the model.

Before mentions are looked for, a report is mended where hospitals' reports differ from Open-i's
(tests/data/invented_findings.tsv holds the cases): slips in the findings' own words are undone, a
history written into the text is skipped, and a structured report's headings read as the subjects
of their sentences.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Iterable, Sequence

from rapidfuzz import process
from rapidfuzz.distance import OSA, Indel

from slm.tasks import FINDINGS, NO_FINDING, no_finding

# Words that may stand between "no" and a change: "no significant interval change".
QUALIFIERS = r"(?:(?:significant|interval|substantial|appreciable|definite|further) )*"
# Phrases that hold a negation word but leave the finding possible or present; they are rewritten
# before negation is looked for ("effusion cannot be excluded" is uncertain, so Yes).
NOT_NEGATIONS = (
    (r"\b(?:can ?not|could not|can't|not) (?:be )?(?:entirely |completely |totally )?(?:excluded|exclude|ruled out|rule out)", " possible "),
    (rf"\b(?:no|without|not much|lack of) {QUALIFIERS}(?:change|increase|progression|worsening)", " stable "),
    (r"\bnot (?:significantly |substantially )?(?:changed|increased|improved)", " stable "),
    (r"\bno longer (?:enlarging|increasing|growing|progressing|worsening|expanding)", " stable "),
    # still there: "no interval resolution of", "no improvement in", "has not completely cleared"
    (rf"\b(?:no|not yet|without) {QUALIFIERS}(?:resolution|reduction|improvement|decrease|clearing)", " persistent "),
    (r"\b(?:does|do|did|has|have) not (?:appear to (?:have )?|yet |completely |entirely |fully )*"
     r"(?:resolved?|cleared?|improved?)", " persistent "),
    # a follow-up to see it gone says it is there now: "to document resolution of the pneumonia"
    (r"\b(?:document|ensure|confirm|verify|demonstrate) (?:complete )?resolution", " persistent "),
    # a "not" about its degree, not its presence: "is not displaced", "not under tension", "is not new"
    (r"\bnot (?:significantly |substantially |particularly |very |clearly )?(?:displaced|under tension|new|large|"
     r"larger|severe|extensive|massive|acute|sharp|layer\w*)\b", " known "),
    (r"\bnot (?:clearly |well |easily )?(?:separa\w+|distinguish\w*|distinct) from", " next to "),
    (r"\bnot possible to (?:exclude|rule out)", " possible "),
    # "neither the effusion nor the atelectasis has changed": both are there
    (r"\bneither\b(?=[^.;]*\bnor\b[^.;]*\bha(?:s|ve) changed)", " "),
    (r"\bnor\b(?=[^.;]*\bha(?:s|ve) changed)", " and "),
    (r"\b(?:has|have) not xxxx\b", " stable "),  # "has not [changed] since", redacted
    (r"\bnot (?:been )?(?:entirely |completely )?resolved", " persistent "),
    # some is left: "almost completely resolved pleural air collection", "near-complete resolution"
    (r"\b(?:almost|nearly|near|partial(?:ly)?|partly|incomplete(?:ly)?|mostly|largely)[- ](?:complete(?:ly)? )?"
     r"(?:resol\w*|clear\w*)", " decreased "),
    (r"\b(?:not|without) (?:[\w-]+ ){0,2}calcifi\w*", " noncalcified "),
    # seen but hard to read: "a thoracic XXXX deformity that is not well characterized"
    (r"\bnot (?:well|fully|completely)[- ](?:characteri[sz]ed|defined|delineated)", " possible "),
    # a device whose tip lies out of view is there: "enteric tube, the tip not included on the image"
    (r"\btips? (?:of (?:the |an? )?(?:[\w-]+ ){0,3}(?:tubes?|lines?|catheters?|picc) )?(?:(?:is|are|was) )?"
     r"not (?:well |clearly |fully |definitely |entirely )?(?:seen|visuali[sz]ed|included|imaged|identified|shown|"
     r"demonstrated|in view)", " tip out of view "),
    # a query before a word is a possible finding: "?early RLL pneumonia" (and not the end of a sentence)
    (r"(?<![\w?])\? ?(?=[a-z])", " possible "),
    (r"\bnot (?:yet )?re-?(?:expanded|aerated|inflated)", " persistent "),
    # new on this exam: "nodule, not present on the 2021 film", "not seen on the prior study"
    (r"\b(?:not (?:present|seen|visible|evident|identified)|absent) on (?:the |a )?(?:prior|previous|earlier|old|last|"
     r"\d{4}) ?(?:[\w-]+ )?(?:film|study|exam\w*|radiograph|images?|x-?ray|cxr)s?", " new "),
    (r",\s*however,", " however "),  # "the heart, however, is enlarged"
    # the edge of the film, not an absence: "the distal tip ... not included on the study"
    (r"\bnot (?:entirely |fully |completely |well )?(?:included|imaged|in the field of view) (?:on|in) (?:the |this )?"
     r"(?:study|image|film|exam\w*|radiograph|view)s?", " out of view "),
)
# A negation word before a mention, within NEGATION_WINDOW words and not across a scope breaker.
PRE_NEGATION = re.compile(
    r"\b(?:no|not|without|neg(?:ative)? for|clear of|free of|absence of|resolution of|resolved|removal of|removed|"
    r"rather than|instead of|neither|nor|none|if(?![^,]*,)|clear|clearing of|obscure|evaluate for|evaluation for|"
    r"assess for|mimic\w*|simulat\w*|lack of|absent)\b"
)
NEGATION_WINDOW = 16
SCOPE_BREAKER = re.compile(
    r"\b(?:but|with|however|although|though|except|aside from|apart from|which|whereas|otherwise)\b|:"
    r"|\bother than\b|(?<=resolved),|(?<=removed),|(?<=cleared),"  # "effusions resolved, atelectasis persists"
    # a new clause with its own verb: "without evidence of effusion, the right chest tube remains in place"
    r"|, (?:and )?the\b(?=(?: [\w-]+){1,5} (?:is|are|remains?|has|have|was|were|appears?|measures?|projects?|"
    r"terminates?|lies|overlies|demonstrates?|shows?|contains?)\b)"
    # a new clause, a cause, a device's placement, a state or size after a comma: "without focal consolidation,
    # there is mild atelectasis", "not seen owing to lower lobe collapse", "no pneumothorax following placement
    # of the line", "no edema, small right effusion"
    r"|\b(?:due to|owing to|because of|favou?ring|(?<!if )there (?:is|are))\b"
    r"|\b(?:following|after) (?:the )?(?:placement|insertion)"
    r"|\b(?:stable|unchanged|persistent)\b|, (?:and )?(?:tiny|small|mild|moderate|trace|healed|healing|old|chronic|"
    r"minimal|slight|marked|severe|extensive|residual)\b"
)
# A negation after a mention: "pneumothorax is not seen", "the nodule has resolved", "catheter removed".
POST_NEGATION = re.compile(
    r"^\W*(?:[\w-]+\W+){0,6}?(?:(?:is|are|was|were|has|have|been)\W+)*"
    r"(?:not(?! \w+ing\b)|no longer|resolved|removed|absent|re-?expanded|re-?aerated|occult|"
    r"within (?:the )?(?:normal limits|limits of normal))\b"
    # a list said to be gone further on: "consolidation, atelectasis, and ... blunting ... have cleared"
    r"|^\W*(?:[\w-]+\W+){0,12}?(?:has|have) (?:since |now |all |also |completely |entirely )?(?:been )?"
    r"(?:cleared|resolved|removed)\b"
    # said excluded right after: "pneumothorax is excluded", "fracture ruled out" (not "should be excluded")
    r"|^\W*(?:(?:is|are|was|were|has been|have been)\W+)?(?:excluded|ruled out)\b"
    r"|^\W*removal\b"  # "after chest tube removal"
)
# Gone by now, said in a clause of its own: "the prior film showed a right pneumothorax, which is not present today"
WHICH_NEGATION = re.compile(r"^\W*which (?:is|are|has|have) (?:not|no longer)\b")
# A structured report's answer to its own heading: "Pneumothorax: none.", "Lines/tubes: none."
HEADING_NEGATION = re.compile(r"^\W{0,2}:\s*(?:none|no|negative|absent|nil|not (?:seen|present|identified))\b")
SENTENCE_END = re.compile(r"(?<!\d)\.(?!\d)|[;?!\n]")


def _negated(sentence: str, start: int, end: int) -> bool:
    """A negation cue before the mention (within the window, after the last scope breaker) or right after it."""
    before = sentence[:start]
    # searched in the whole sentence: a breaker may look ahead past the mention (", the ... remains")
    breakers = [b for b in SCOPE_BREAKER.finditer(sentence) if b.end() <= start]
    if breakers:
        before = before[breakers[-1].end():]
    words = before.split()[-NEGATION_WINDOW:]
    mention = sentence[start:end]
    if PRE_NEGATION.search(" ".join(words) + " " + mention):
        return True
    after = sentence[end:]
    if HEADING_NEGATION.match(after) or WHICH_NEGATION.match(after):
        return True
    breaker = SCOPE_BREAKER.search(after)
    return bool(POST_NEGATION.search(after[: breaker.start()] if breaker else after))


class Finding:
    """Mention phrases of one finding, and phrases that, where they cover a mention, cancel it."""

    def __init__(self, name: str, mentions: Sequence[str], not_this: Sequence[str] = ()):
        self.name = name
        self.mentions = re.compile("|".join(f"(?:{m})" for m in mentions))
        self.not_this = re.compile("|".join(f"(?:{m})" for m in not_this)) if not_this else None

    def present_in(self, sentence: str) -> bool:
        """True when some mention in the sentence is neither cancelled nor negated."""
        cancelled = [m.span() for m in self.not_this.finditer(sentence)] if self.not_this else []
        for match in self.mentions.finditer(sentence):
            start, end = match.span()
            if not any(s <= start < e or s < end <= e for s, e in cancelled) and not _negated(sentence, start, end):
                return True
        return False


W = r"(?:[\w'/-]+ ){0,%d}"  # up to n words in between, e.g. "heart " + W % 3 + "enlarged"
CLAUSE = r"(?:[\w'/-]+,? ){0,%d}"  # the same, across commas
HEART = r"(?:heart|cardiac (?:silhouette|shadow|contour|size|diameter)|heart size|cardiac)"
MEDIASTINUM = r"(?:mediastin\w*|cardiomediastinal (?:silhouette|contour|shadow|width)s?|cardio-mediastinal \w+)"
MEDIASTINAL_PLACE = r"(?:paratracheal|mediastin\w*|subcarinal|aortopulmonary|ap window|ap xxxx)"
MEDIASTINAL_SIGN = (
    r"(?:mass\w*|fullness|lymphadenopathy|adenopathy|densit\w*|opacit\w*|prominen\w*|thicken\w*|widen\w*|convexity|lobulat\w*|"
    r"contour abnormality|enlarged lymph)"
)
# Not right after another structure's name: "nodule and right hilar calcifications" (the hilum's, not the nodule's).
OTHER_SITE = "".join(
    f"(?<!{site} )" for site in ("hilar", "mediastinal", "aortic", "paratracheal", "subcarinal", "nodal", "vascular")
)
# A vertebra's collapse is a fracture (height loss), not atelectasis: "osteoporotic collapse of L1".
VERTEBRAL_COLLAPSE = (r"(?:vertebra\w*|body|bodies|spine|compression|osteoporotic) collaps\w*"
                      r"|collaps\w* of (?:the )?(?:\w* ?vertebra|[tl]\d{1,2}\b)")
DEVICE_PART = r"(?:screws?|wires?|leads?|catheters?|plates?|rods?|hardware|fixation|stents?|lines?)\b"
DEVICE_LINE = r"(?:picc|central|venous|jugular|subclavian|arterial|swan|dialysis|hickman|groshong|catheter|port)"

RULES = (
    Finding(
        "Enlarged Cardiomediastinum",
        (
            # not across a new clause: "the heart is enlarged but the mediastinum is normal"
            rf"\b(?:widen\w*|broaden\w*|enlarg\w*|prominen\w*|fullness|bulky) (?:of )?(?:the )?"
            rf"(?:(?!but |and |while |whereas )[\w'/-]+ ){{0,2}}{MEDIASTINUM}",
            rf"{MEDIASTINUM}:? {W % 4}(?:widen\w*|broad\w*|enlarg\w*|prominen\w*|fullness|wide|bulky)",
            rf"{MEDIASTINAL_PLACE} {W % 3}{MEDIASTINAL_SIGN}",
            rf"{MEDIASTINAL_SIGN} {W % 4}{MEDIASTINAL_PLACE}",
            r"hilar mass\w*",
            r"mass\w* (?:in|of|at) (?:the )?(?:left |right )?hil(?:um|a|ar)\b",
        ),
        # a shadow there said to be something else: "density overlying the lower mediastinum ... due to hiatal
        # hernia", "paratracheal soft tissue density ... confluence of vascular shadows"
        not_this=(rf"(?:densit\w*|opacit\w*) {CLAUSE % 12}(?:hernia|confluence|superimpos\w*|summation|"
                  rf"(?:vascular|osseous|bony),? {CLAUSE % 3}(?:shadows|structures))",),
    ),
    Finding(
        "Cardiomegaly",
        (
            r"cardiomegaly",
            r"cardiac enlargement",
            rf"(?:enlarg\w*|prominen\w*(?: of)?(?: the)?) {W % 2}"
            r"(?:heart|cardiac silhouette|cardiac shadow|cardiac contour)",
            rf"{HEART} {W % 6}(?:enlarg\w*|increased in size|large|prominent|borderline)",
            rf"borderline {W % 1}{HEART}",
            r"(?:ventric\w*|atri\w*) enlarg\w*|enlarg\w* (?:\w+ )?(?:ventric|atri)\w*",
            r"increased (?:heart|cardiac) size",
            r"increase\w* (?:in )?(?:the )?size of (?:the )?(?:heart|cardiac silhouette)",
            # the cardiothoracic ratio: "CTR increased", "CTR > 0.5" is not read
            r"\b(?:ctr|cardiothoracic ratio) (?:is )?(?:increased|enlarged|raised|high)|(?:increased|raised) "
            r"(?:ctr|cardiothoracic ratio)",
        ),
        not_this=(r"upper limits? (?:of )?normal", r"top (?:of )?normal", r"limits? of normal", r"mediastin"),
    ),
    Finding(
        "Lung Lesion",
        (
            r"\bnodul\w*",
            r"\bmass(?:es)?\b",
            r"\blesions?\b",
            r"tumou?rs?",
            r"neoplas\w*",
            r"carcinoma",
            r"malignan\w*",
            r"\bcancer\b",
            r"metasta\w*",
            r"cavit\w*",  # cavitary lesion, cavity, cavitation
            r"\blump\b",
        ),
        not_this=(
            rf"(?<!non)(?<!non-)calcifi(?:ed|c) {W % 4}(?:nodul|mass|lesion)",
            rf"(?:nodul\w*|mass|lesion)s? {W % 8}(?<!non)(?<!non-){OTHER_SITE}calcifi",
            r"\b(?:mediastinal|hilar|paratracheal|breast|soft tissue|bon[ey]|osseous|lytic|sclerotic|skin|chest wall|"
            r"pericardial|pleural|thyroid|rib|cardiac|neck|expansile) (?:nodul\w*|mass\w*|lesions?)",
            rf"metasta\w* {W % 3}(?:bone|osseous|skelet\w*|spine)",
            r"(?:mass\w*|lesions?) (?:in|of|at) (?:the )?(?:left |right )?(?:hil(?:um|a|ar)|mediastinum)\b",
            r"reticular-nodular",
            r"nodular (?:prominence )?(?:of )?(?:the )?(?:\w+ )?hil",
            r"nipple",
            r"(?:thoracic|chest|pleural|abdominal|peritoneal) cavity",
            # another organ's cancer: "compatible with patient's known breast carcinoma"
            r"(?:breast|prostate|colon|colorectal|renal|thyroid|esophageal|bladder|ovarian|testicular|pancreatic|"
            r"skin|germ cell|uterine|endometrial|rectal|gastric) (?:cell )?"
            r"(?:carcinoma|cancer|neoplas\w*|malignan\w*|tumou?r)",
            # a nodule explained away as overlapping shadows: "nodular opacity ... is XXXX to represent confluence"
            rf"(?:nodul\w*|mass|lesion)s? {CLAUSE % 10}(?:represent\w*|due to|secondary to|related to|reflect\w*|from) "
            r"(?:\w+ ){0,2}(?:confluence|superimpos\w*|summation|overlap\w*)",
        ),
    ),
    Finding(
        "Lung Opacity",
        (
            r"opaci\w*",
            r"air ?-?space (?:disease|process)",
            r"infiltrat\w*",
            r"\b(?:increased|increasing|patchy|hazy|streaky|linear|focal|airspace|parenchymal|alveolar|ill-defined|"
            r"retrocardiac|basilar|bibasilar|interstitial|xxxx|vague|subtle|suprahilar|perihilar|rounded|round|mixed) "
            r"densit\w*",
            r"\bopaque\b",
            rf"(?:increased|increase in|prominen\w*|accentuat\w*|coarse\w*) {W % 3}markings",
            rf"markings {W % 3}(?:increased|prominen\w*|accentuat\w*|coarse\w*)",
            r"bronch\w* (?:wall )?thickening",
            r"bronchitic changes",
            rf"(?:increased|prominent|prominence of|coarse\w*|accentuated|increase in|thickened) {W % 2}interstiti\w*",
            rf"interstiti\w* {W % 1}(?:markings?|pattern|prominence|thickening|disease|changes|process|lung disease|"
            r"infiltrat\w*|abnormalit\w*)",
            r"reticula\w*",
            r"reticulonodular",
            r"scar\w*",
            r"fibros\w*",
            r"fibrotic",
            r"peribronchial (?:thickening|cuffing)",
            r"shadowing",  # British: "airspace shadowing"
            r"ground[- ]glass",
        ),
        not_this=(
            r"pleural[- ](?:parenchymal |based )?(?:scar\w*|opaci\w*|densit\w*)",
            r"pleuro-?parenchymal scar\w*",
            rf"(?:costophrenic|sulc\w*|recess|pleural\S*|blunt\w*),? {CLAUSE % 12}scar\w*",
            rf"scar\w* {W % 4}(?:costophrenic|sulc\w*|recess)",
            # a shadow said to be something outside the lung, across commas: "opacification over both XXXX, XXXX
            # secondary to soft tissue attenuation", "density ... representing overlying shadows of bony structures"
            rf"(?:opaci\w*|densit\w*) {CLAUSE % 10}(?:hernia|fat\b|soft tissue|breast tissue|artifact|overlap\w*|"
            r"nipple|skin fold|confluence|superimpos(?!\w* (?:infection|pneumonia|consolidation|edema))\w*|summation|"
            r"overlying (?:shadows?|bon\w*|osseous)|piercings?|gunshot|bullet\w*|"
            r"shrapnel|metallic|foreign bod\w*)",
            # prominent vessels are edema (the rubric's "vascular prominence"), not abnormal lung markings
            r"(?<!broncho)vascular markings",
            rf"(?:opaci\w*|densit\w*) {W % 8}{MEDIASTINAL_PLACE}",
            rf"(?:mediastin\w*|paratracheal) {W % 1}(?:opaci\w*|densit\w*)",
            rf"crowd\w* {W % 4}markings",  # crowded by low lung volumes, not abnormal markings
            # the redacted "double density" of an enlarged left atrium, not a lung opacity
            rf"xxxx densit\w* {CLAUSE % 16}atri\w* enlarg|atri\w* enlarg\w* {CLAUSE % 16}xxxx densit\w*",
            r"(?:normal|clear) interstiti\w*",
            r"interstiti\w* markings (?:are|is|appear) (?:normal|unremarkable|within normal)",
            r"nodular densit\w*",
        ),
    ),
    Finding(
        "Edema",
        (
            r"(?<!soft tissue )edema",
            r"congesti\w*",
            r"heart failure",
            r"\bchf\b",
            r"cephaliz\w*",
            r"kerley",
            rf"(?:vascula\w*|vessels|pulmonary xxxx) {W % 4}(?:indistinct\w*|prominen\w*|engorge\w*|redistribut\w*|congest\w*)",
            rf"(?:indistinct\w*|prominen\w*|engorge\w*|increased|redistribut\w*) {W % 4}(?:vascula\w*|vessels)",
            r"(?:pulmonary )?venous hypertension",
            r"(?:blood|venous) diversion",  # British for cephalization
            r"(?:ventricular|cardiac) failure",
            r"\b(?:ccf|lvf)\b",  # congestive cardiac failure, left ventricular failure
        ),
        not_this=(r"normal (?:pulmonary )?vascular", r"soft tissue edema"),
    ),
    Finding("Consolidation", (r"(?<!non)(?<!non-)consolidat\w*", r"\bconsol\b")),
    Finding(
        "Pneumonia",
        (r"pneumonias?\b", r"pneumonitis", r"infecti\w*", r"bronchopneumoni\w*", r"\bpna\b"),
        not_this=(rf"(?:granulomatous|prior|previous|old|remote|healed|histoplasm\w*) {W % 2}infecti\w*",),
    ),
    Finding(
        "Atelectasis",
        (r"atelecta\w*", r"collaps\w*", r"\batx\b"),
        not_this=(VERTEBRAL_COLLAPSE,),
    ),
    Finding(
        "Pneumothorax", (r"pneumothora\w*", r"\bptx\b", r"pleural (?:air|gas)\b", rf"air collection {W % 8}pleura")
    ),
    Finding(
        "Pleural Effusion",
        (
            r"effusion",
            r"pleural fluid",
            r"fluid (?:in|within|along|at) (?:the )?(?:\w+ ){0,2}(?:fissure|pleural|costophrenic)",
            r"fissural fluid",
            r"(?:loculated|localized|subpulmonic|layering) fluid",
            r"hydrothorax",
            r"hydropneumothora\w*",
            r"ha?emo-?(?:pneumo)?thora\w*",
        ),
        not_this=(r"pericardial effusion", r"joint effusion"),
    ),
    Finding(
        "Pleural Other",
        (
            rf"pleural {W % 2}thicken\w*",
            rf"thicken\w* (?:of )?(?:the )?{W % 2}pleura",
            r"pleural (?:plaques?|calcifi\w*|scar\w*)",
            r"calcified pleura\w*",
            rf"plaques? (?:along|of|on|in|at|over) (?:the )?{W % 2}pleura\w*",
            r"pleural[- ](?:parenchymal|peripheral) (?:\w+ )?(?:scar\w*|irregular\w*|thicken\w*|opaci\w*)",
            r"pleuroparenchymal (?:scar\w*|irregular\w*)",
            rf"(?:costophrenic|sulc\w*|recess|pleural sinus|blunt\w*),? {CLAUSE % 12}(?:scar\w*|thicken\w*)",
            rf"scar\w* {W % 4}(?:costophrenic|sulc\w*|recess)",
            rf"fissur\w* thicken\w*|thicken\w* {W % 3}fissure",
            r"pleural (?:reaction|abnormalit\w*|retraction)",
            rf"apical {W % 2}thicken\w*",
            r"pleural[- ]based (?:opaci\w*|densit\w*|thickening|scar\w*)",
            r"fibrothorax",
            r"apical (?:pleural )?cap(?:s|ping)?\b",
        ),
    ),
    Finding(
        "Fracture",
        (
            r"fractur\w*",
            r"(?:compression|wedge|wedging|xxxx) deformit\w*",
            r"wedg\w*",
            rf"(?:loss of|decreased|diminished) {W % 3}height",
            rf"loss of xxxx {W % 4}vertebra\w*|xxxx loss {W % 4}(?:vertebra\w*|t\d+\b)",
            r"height loss",
            r"healing deformit\w*",
            r"\bfxs?\b",
            r"compression xxxx",  # "stable compression XXXX of the L1 vertebral body", its noun redacted
            r"#(?= ?(?:[\w-]+ ){0,4}(?:ribs?|clavicles?|humer\w*|scapula\w*|stern\w*|vertebra\w*|spine)\b)",  # British
            VERTEBRAL_COLLAPSE,
        ),
        not_this=(
            # a lung shadow's shape, as in a pulmonary infarct: "a wedge-shaped opacity in the right upper lobe"
            rf"wedge[- ]shaped {W % 1}(?:opaci\w*|densit\w*|consolidat\w*|infiltrat\w*|air ?space|infarct\w*)",
            r"wedge resection",  # lung surgery
            rf"(?:catheter|sternotomy|wires?|leads?|screw|hardware) {W % 2}fractur\w*",
            rf"fractur\w* {W % 4}(?:sternotomy|wires?|catheter|leads?|screw|hardware)",
            # a broken device: "fracture of the lateral most fixation screw", "the screw ... is fractured"
            rf"fractur\w* of (?:the |a )?{W % 4}{DEVICE_PART}",
            rf"{DEVICE_PART} {W % 5}(?:is|are|was|were|appears?) fractured",
        ),
    ),
    Finding(
        "Support Devices",
        (
            rf"{DEVICE_LINE} {W % 2}(?:lines?|catheters?|tips?)",
            r"\bpicc\b",
            r"catheters?",
            r"\btub(?:es?|ing)\b",
            # endotracheal, nasogastric, orogastric tube; central venous, intercostal catheter
            r"\b(?:ett|ngt|ogt|cvc|icc)\b",
            r"\blines? (?:and tubes? )?(?:ok|in (?:good |satisfactory )?position|satisfactory|unchanged|stable)",
            r"\b(?:ecg|ekg)\b|tracheostom\w*",
            r"\bppm\b|\becmo\b|cannula\w*|\biabp\b|impella|\blvad\b",
            r"\b(?:avr|mvr|tavi|tavr)\b|annuloplasty",  # valve replacements, a valve ring
            r"expanders?",  # breast tissue expanders
            r"\btip\b",
            r"xxxx-a-xxxx",
            r"(?:cardiac|surgical) xxxx",
            r"stimulator",
            r"telemetry",
            r"implants?",
            r"occluder",
            r"balloon",
            r"(?:vertebro|kypho)plasty",
            r"(?:shoulder|joint|hip|humeral) (?:replacement|prosthesis)",
            r"prosthetic (?:right |left )?(?:shoulder|joint|hip|knee|humer\w*)",
            r"intramedullary",
            r"\btips\b",
            r"(?:ivc|vena cava) (?:filter|xxxx)",
            r"stabilization (?:xxxx|hardware|rods?)",
            r"bypass graft\w*",
            r"internal fixation",
            r"gastrostomy",
            r"embolization",
            r"(?:spine|spinal|cervical) fusion",
            r"\bfusion xxxx",  # fusion hardware, redacted
            # a redacted device said to be in position: "the chest XXXX is in satisfactory position"
            rf"xxxx {W % 2}(?:(?:is|are|remains?) )?(?:in (?:satisfactory|good|appropriate|standard|adequate|unchanged|"
            r"stable|expected|similar) position|in (?:the )?(?:svc|superior vena cava|right atrium))",
            r"\bport\b",
            r"port-a-cath",
            r"mediport",
            r"pacemaker",
            r"pacer",
            r"\b(?:a?icd)\b",
            r"defibrillator",
            r"\bleads?\b",
            r"\bwires?\b",
            r"sternotom\w*",
            r"\bcabg\b",
            r"\bclips?\b",
            r"sutures?",
            r"\bstents?\b",
            r"(?:prosthe\w*|artificial|mechanical) (?:\w+ )?valve",
            r"valve (?:replacement|prosthesis|xxxx)",
            r"hardware",
            r"\bplates?\b",
            r"\bscrews?\b",
            r"\brods?\b",
            r"\bdrains?\b",
            r"devices?",
            r"generator",
            r"electrodes?",
            r"loop recorder",
            r"staple\w*",
            r"cerclage",
            r"\bcoils?\b",
            r"arthroplast\w*",
            r"prosthes[ie]s",
            r"anchors?",
            r"\bvp shunt|shunt catheter",
        ),
        not_this=(r"(?:end|growth|epiphyseal) plates?", r"plate-?like", r"(?:bullet|jewelry|button|clothing|snap)",
                  r"tube(?:rcul|r)",
                  # the heart's border, redacted: "obscuration of the right cardiac XXXX"
                  rf"(?:obscur\w*|silhouett\w*|effac\w*|blurr\w*) {W % 2}(?:left |right )?cardiac xxxx"),
    ),
)
assert tuple(rule.name for rule in RULES) == FINDINGS

# Sections that are not about what is seen on this exam, as lines or, in free text, as sentences
# ("Clinical details: SOB, ?CHF. Heart size normal...").
SKIPPED_SECTIONS = re.compile(
    r"^(?:indications?|comparison|history|clinical (?:details|history|information|indication|notes?|question)|"
    r"reason(?: for (?:exam\w*|study|request))?)\s*:",
    re.I,
)
SECTION_NAME = re.compile(r"^(?:findings|impression):\s*", re.I)
# A heading that opens a sentence reads as its subject ("HEART: Mildly enlarged." is "heart is mildly enlarged"),
# unless it answers none (HEADING_NEGATION).
HEADING = re.compile(r"^([a-z][\w /&-]{0,30}?):(?!\s*(?:none|no|negative|absent|nil|not)\b)\s*")
# Dictation heard wrong: "plural effusion" is pleural; a "pleural infusion" is an effusion.
PLURAL = re.compile(r"\bplural (?=(?:[\w-]+ )?(?:thicken|plaque|effusion|fluid|scar|calcif|space|based|reaction|cap))")
# The findings' own words, for typing slips: "effusoin", "cardiomegally", "atelectsis" (two letters swapped, one
# letter extra or left out; a wrong letter only in words of 8 letters or more, as "atelectisis": a short real word
# is no slip, "module" is not "nodule", "enema" not "edema") read as the word, and words split by dictation
# ("cardio megaly", "pneumo thorax", "in filtrate") joined. A word one slip from two of them is left alone.
KEY_WORDS = (
    "effusion", "effusions", "cardiomegaly", "atelectasis", "consolidation", "consolidations", "pneumonia",
    "pneumothorax", "edema", "oedema", "fracture", "fractures", "fractured", "opacity", "opacities", "nodule",
    "nodules", "infiltrate", "infiltrates", "mediastinum", "mediastinal", "enlarged", "enlargement", "catheter",
    "pacemaker", "sternotomy",
)


@lru_cache(maxsize=65536)
def _spelled(word: str) -> str:
    if word in KEY_WORDS:
        return word
    near = [key for key, _, _ in process.extract(word, KEY_WORDS, scorer=OSA.distance, score_cutoff=1, limit=None)
            if len(word) >= 8 or Indel.distance(word, key) <= 1 or sorted(word) == sorted(key)]
    return near[0] if len(near) == 1 else word


SPLIT_KEY_WORDS = re.compile(r"\b(?:%s)\b" % "|".join(
    f"{key[:i]} {key[i:]}" for key in KEY_WORDS for i in range(2, len(key) - 2)))


def _mended(text: str) -> str:
    """The text with dictation and typing slips in the findings' words undone."""
    text = SPLIT_KEY_WORDS.sub(lambda m: m[0].replace(" ", ""), text)
    text = re.sub(r"[a-z]{4,}", lambda m: _spelled(m[0]), text)
    return PLURAL.sub("pleural ", text).replace("pleural infusion", "pleural effusion")


def _sentences(report: str) -> list[str]:
    kept = [SECTION_NAME.sub("", line) for line in report.splitlines() if not SKIPPED_SECTIONS.match(line.strip())]
    text = _mended(" ".join(kept).lower())
    for pattern, replacement in NOT_NEGATIONS:
        text = re.sub(pattern, replacement, text)
    sentences = (" ".join(s.split()) for s in SENTENCE_END.split(text))
    return [HEADING.sub(r"\1 is ", s) for s in sentences if s and not SKIPPED_SECTIONS.match(s)]


class RuleLabeler:
    """Negation-aware CheXpert-style labeler: same input and output as Engine.label."""

    version = "rule-labeler-6"  # 2, 3: phrasings from the train-report error analysis; 4: rubric cases (issue 14);
    # 5: invented sentences (tests/data/invented_findings.tsv): headings answered "none", abbreviations, hila,
    # "neither", a new clause after a comma; 6: a tube's tip out of view, "not included on the image", British and
    # ICU wording, typing and dictation slips, histories inside the text, structured reports' headings

    def label(self, texts: Iterable[str]) -> list[dict[str, str]]:
        return [self._label_one(text) for text in texts]

    def _label_one(self, report: str) -> dict[str, str]:
        sentences = _sentences(report)
        labels = {rule.name: "Yes" if any(rule.present_in(s) for s in sentences) else "No" for rule in RULES}
        labels[NO_FINDING] = no_finding(labels)
        return labels
