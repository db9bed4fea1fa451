"""The rule-based harmonizer: vendor naming conventions written down as a table of patterns.

It is the fallback when no language model loads and the baseline the model must beat, so every
rule says which convention it stands for. The labelling rules it follows (shared/data/README.md):
post-contrast T1 is T1; GE "T1 FLAIR" is T1; T2* GRE / hemosiderin is Other unless it is SWI; DWI
includes trace, isotropic, b-value and raw DTI series; ADC includes "dADC" and "Apparent Diffusion
Coefficient"; localizers, reformats (MPR/MIP/minIP), perfusion, angiography, spectroscopy, PD, field
maps and calibration scans are Other.

How a description is decided:
1. It is normalized (`normalize`): Unicode compatibility forms folded (full-width "Ｔ１" is "t1"),
   case folded, accents dropped, "T2*" spelled "t2star" and "+C" spelled "postcontrast" before
   every separator (underscore, hyphen, brackets...) becomes one space. Where case says two words
   were glued ("ep2ddiffusionADC", "BRAINSTRYKERt1AX"), the text cut there is read as well.
2. Every rule that matches contributes a hit: its label, its family and its kind.
   - "decisive" rules name series that are not one of the six diagnostic contrasts whatever else
     the text says (a localizer, a reformat of a T1, a perfusion map...): any such hit means Other.
   - "strong" rules name a contrast outright (T1, MPRAGE, FLAIR, ADC, SWAN...).
   - "weak" rules name a technique that usually, not always, means a contrast (TSE is usually T2,
     a contrast marker alone usually a T1, GRE alone usually T2*).
3. Among the strong hits (else the weak ones) the family first in PRECEDENCE wins: the more
   specific name beats the generic one ("t2_tirm_dark-fluid" is FLAIR, "t1 tse" is T1).
4. Nothing matched: one typing slip is undone in one word (a letter swapped or struck twice or extra:
   "3D_FLAIIR", "sag_lfair", "DIT"); where that reads one label outright, that label, with a low
   confidence. Else Other, with a lower one.

The confidence says how the decision was reached, and it is calibrated on that reading: one clear
family is high, a conflict settled by precedence lower, a guess from weak hints lower still.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

from slm.harmonizer import Prediction

# Confidence for each way a decision can be reached (see the module docstring).
CONFIDENCE = {
    "decisive": 0.95,  # a non-diagnostic series named outright
    "decisive_over_contrast": 0.85,  # ... whose text also names a contrast ("t1_mprage_MPR_cor")
    "strong": 0.95,  # one contrast family, named outright
    "strong_conflict": 0.65,  # two families named outright, settled by precedence
    "weak": 0.75,  # only a technique that usually means the contrast
    "weak_conflict": 0.55,  # techniques of two families, settled by precedence
    "slip": 0.55,  # nothing read as written, one label read outright with one typing slip undone
    "fallback": 0.3,  # nothing recognised: Other
    "empty": 0.05,  # blank description
}

# Letters that scanners glue in front of a contrast name: AxT2, SagT1, 3DT1, Philips "sT1W" (SENSE)
# and "dADC" (derived). Elsewhere a short name must stand alone, so "part1" is not a T1.
_GLUED_PREFIXES = ("ax", "sag", "cor", "tra", "3d", "2d", "s", "d")
_LEFT = "(?:(?<![a-z])|" + "|".join(f"(?<=(?<![a-z]){p})" for p in _GLUED_PREFIXES) + ")"


def word(core: str) -> str:
    """A pattern for `core` as a word of its own (glued prefixes allowed, no letter after it)."""
    return f"{_LEFT}(?:{core})(?![a-z])"


def glued_after(core: str) -> str:
    """A distinctive name glued behind a site or protocol word ("STROKESWI", "BRAINADC", "DWIADC"):
    any letters before it, none after. Only for names no common word ends with."""
    return f"(?<=[a-z])(?:{core})(?![a-z])"


def cyrillic(core: str) -> str:
    """Russian words and abbreviations (ДВИ, ИКД), as whole words: `word` knows Latin letters only."""
    return f"(?<![^\\W\\d_])(?:{core})(?![^\\W\\d_])"


def contrast(name: str) -> str:
    """T1 / T2 as written: t1, T1W, T1-weighted, AxT1, 3DT1, t1mprage, not t10 or part1."""
    return f"{_LEFT}{name}(?!\\d)"


@dataclass(frozen=True)
class Rule:
    family: str  # what the rule recognises; families are ranked in PRECEDENCE
    label: str
    kind: str  # "decisive", "strong" or "weak" (see the module docstring)
    pattern: str  # a regular expression over the normalized text
    why: str  # the convention it stands for

    def matches(self, text: str) -> bool:
        return re.search(self.pattern, text) is not None  # re caches the compiled pattern


RULES = (
    # --- Series that are none of the six contrasts, whatever else they name -------------------
    Rule("localizer", "Other", "decisive",
         word(r"locali[sz]\w*|lokali[sz]\w*|loc|locator|scout|survey|smart ?brain|pilot|aa ?head ?scout"
              r"|aa ?scout|3 ?pl(?:ane)?|tri ?pl(?:ane)?|three ?plane|scano(?:gram)?|reperage|ubersicht"
              r"|plan(?:ning)?|positioning")
         + r"|位置決め",
         "localizers and scouts: Siemens localizer/AAHead_Scout, GE 3-Plane Loc, Philips Survey/SmartBrain,"
         " Canon Locator, French repérage, German Übersicht, Japanese 位置決め"),
    Rule("reformat", "Other", "decisive",
         word(r"(?<!^ t1 )mpr ?(?:sag|cor|tra|ax|range|thick)\w*|(?:sag|cor|tra|ax|thick)\w* mpr|mprs"
              r"|m ?(?:in ?)?ips?|max ?ip|reformat\w*|re?fmt|recon|curved|volume ?rendering|vr"
              r"|mpr(?=.* (?:t2|flair)(?![a-z\d]))|(?:t2|flair) .*mpr"),
         "reformats made on the console or PACS: Siemens _MPR_Cor / MPR Range, mIP_Images(SW), GE Reformatted,"
         " MIP, RECON, REFMT (MPR beside no orientation, or opening Siemens t1_mpr_sag, is an MPRAGE acquisition,"
         " unless a T2 or FLAIR is named: MPRAGE is a T1)"),
    Rule("perfusion", "Other", "decisive",
         word(r"perf\w*|asl|pcasl|pasl|casl|dsc|dce|pwi|cbf|cbv|rcbv|rcbf|relcbf|relcbv|mtt|ttp|tmax"
              r"|cerebral ?blood ?(?:flow|volume)")
         + r"|灌流",
         "perfusion (DSC ep2d_perf, DCE, ASL/pCASL/PASL) and its maps (CBF, CBV, MTT, TTP)"),
    Rule("angiography", "Other", "decisive",
         word(r"tof|mra|mrv|angio\w*|pca|phase ?contrast|venogra\w*|inhance|twist|tricks?|time ?of ?flight"
              r"|q?flow|cine|care ?bolus|bolus ?track\w*")
         + r"|血管",
         "angiography and flow: TOF (tof_fl3d), phase-contrast, MRV, TWIST/TRICKS, CSF flow, bolus tracking"
         " before a contrast MRA (Siemens CARE Bolus)"),
    Rule("spectroscopy", "Other", "decisive",
         word(r"e?spectro\w*|spectra|mrsi?|svs|csi|press|steam|probe|single ?voxel|multi ?voxel"),
         "spectroscopy: Siemens svs_se/csi_se, GE PROBE-P, PRESS/STEAM"),
    Rule("field map", "Other", "decisive",
         word(r"field ?map\w*|fmap|b[01] ?map\w*|phase ?diff\w*|topup|shim\w*"
              r"|rev ?b0|rev ?pe|blip ?(?:up|down)"),
         "field maps and distortion-correction scans (gre_field_mapping, B0/B1 maps, topup, reversed-PE b0)"),
    Rule("calibration", "Other", "decisive",
         word(r"cal|calib\w*|asset ?cal\w*|pure ?cal\w*|coil ?cal\w*|coil ?survey|sense ?ref\w*|ref ?scan"
              r"|ref ?head|prescan|dummy|sbref"),
         "calibration scans: GE ASSET/PURE calibration, Philips SENSE reference and coil survey"),
    Rule("functional", "Other", "decisive",
         word(r"(?<!ven )bold|fmri|resting ?state|rest|rs ?fmri|task|moco ?series|ep2d ?pace"),
         "functional MRI: ep2d_bold, resting state, MoCoSeries (VenBOLD is SWI, not fMRI; MoCo alone is motion"
         " correction, as in T2 BLADE MoCo)"),
    Rule("diffusion map", "Other", "decisive",
         # eADC standing alone: in Philips "DWI_SE_ADC" the "s" is no glued prefix of an eADC
         word(r"fa|fa ?reg|col ?fa|colou?r ?fa|(?<!diffusion )tensor|(?<![a-z])e ?adc|exp|exponential|tracts?"
              r"|tractography|low ?b"),
         "diffusion maps other than ADC: FA (Philips faReg), ColFA, TENSOR, exponential ADC (eADC), tractography;"
         " a diffusion scan's low-b (b0) image saved alone (DIFFUSION_HighRes_LOWB); a DIFFUSION TENSOR"
         " acquisition is DWI"),
    Rule("quantitative map", "Other", "decisive",
         word(r"(?:t1|t2|t2star|r2|r2star) ?(?:map\w*|relax\w*)|relaxometry|qsm|qmap|mdme|synthetic|mwf"
              r"|inv1|inv2"),
         "relaxometry and quantitative maps (T1/T2 maps, QSM, MP2RAGE INV1/INV2 inversions)"),
    Rule("non-image", "Other", "decisive",
         word(r"screen ?save\w*|screenshot|phoenix ?zip ?report|report|dose|secondary ?capture|key ?images?"
              r"|summary|evidence|subtraction|sub|pos ?disp\w*"),
         "screen captures (Siemens PosDisp), reports and subtraction images"),
    # --- The six contrasts and the near misses they are told from ------------------------------
    Rule("ADC", "ADC", "strong",
         word(r"(?:iso ?)?d? ?adc\w*|average ?dc|avg ?dc|apparent\w*|aparente|dif+\w* ?[ck]oef+\w*"
              r"|(?:[ck]oef+\w*|wsp\w*czynnik\w*) ?(?:d[ei] )?d[iy]f+u[sz]\w*")
         + "|" + glued_after("adc") + r"|見かけの拡散係数|表观(?:弥散|扩散)系数|확산 ?계수"
         + "|" + cyrillic("икд"),
         "ADC maps: Siemens _ADC, GE Apparent Diffusion Coefficient (mm2/s), Philips dADC / Average DC;"
         " German Diffusionskoeffizient, Polish współczynnik dyfuzji, Czech koeficient difuze, Russian ИКД"),
    Rule("DWI", "DWI", "strong",
         word(r"(?:iso ?)?dwi\w*|dw|dt ?ssh|dmri|diff|dif+us\w*|d[iy]f+uz\w*|trace ?w?|isotropic|dti\w*|hardi"
              r"|mddw|resolve|b ?(?:[5-9]\d\d|[1-4]\d{3})|(?:[5-9]\d\d|[1-4]\d{3}) ?b")
         + "|" + glued_after("dwi") + r"|拡散|弥散|扩散|擴散|확산" + "|" + cyrillic(r"дви|диффуз\w*"),
         "diffusion-weighted: ep2d_diff, TRACEW, GE DWI 1000b / Isotropic, Philips DWI_SSh, raw DTI, RESOLVE;"
         " Turkish difüzyon, Polish dyfuzja, Czech difuze, Hungarian diffúzió, Korean 확산, Russian ДВИ"),
    Rule("SWI", "SWI", "strong",
         word(r"swi\w*|swan|ven ?bold|suscept\w*|suszeptib\w*|suscett?ib\w*")
         + "|" + glued_after("swi|swan|venbold") + r"|磁化率|磁敏感|자화율" + "|" + cyrillic("сви"),
         "susceptibility-weighted: Siemens SWI, GE SWAN, Philips SWIp / VenBOLD; Italian suscettibilità,"
         " Chinese 磁敏感, Korean 자화율, Russian СВИ"),
    Rule("T2*", "Other", "strong",
         word(r"t2 ?star\w*|star|ha?e?mo\w*|medic|merge|t2 ?w? ?(?:ffe|fe|gre|ge|eg|fl2d|gradient ?echo|echo ?gradient)"
              r"|t2 ?(?:etoile|stern|estrella)"
              r"|eco ?(?:de|di)? ?gradiente|echo ?de ?gradient"),
         "T2* gradient echo (T2*, hemo, Siemens MEDIC, GE MERGE, a T2 GRE / FFE, French T2 EG): Other unless SWI"),
    Rule("T2*", "Other", "weak",
         word(r"gre|ffe|fl2d|fe|gradient ?echo|flash|de2d"),
         "a gradient echo with no contrast named is usually T2* for hemorrhage"),
    Rule("FLAIR", "FLAIR", "strong",
         word(r"\w*flair\w*|flare|flr|dark ?fl\w*|da ?fl|fluid ?att\w*|tirm\w*"),
         "FLAIR: FLAIR (FLR, the slip FLARE), Siemens tirm dark-fluid and SPACE da-fl, GE CUBE FLAIR,"
         " Philips VISTA FLAIR"),
    Rule("T1", "T1", "strong",
         contrast("t ?1") + "|t1w|"
         + word(r"\w*mp ?2? ?rage\w*|mpr|(?:ir ?)?f?spgr|bravo|\w*vibe|\w*thrive|3d ?(?:ffe|fe|gre)"),
         "T1: T1/T1W, MPRAGE (also written MPR)/MP2RAGE, GE SPGR/FSPGR/BRAVO, Siemens VIBE, Philips (e)THRIVE,"
         " a 3D gradient echo"),
    Rule("T1", "T1", "weak",
         word(r"\w*tfe|tfl\w*|fl3d\w*|rssg|fe3d|se|ti|pre|post\w*|gad\w*|gd|contrast\w*|kontrast\w*|km|ce|mdc|inj\w*")
         + r"|造影|" + cyrillic(r"контраст\w*|ку"),
         "Philips TFE, Siemens tfl/fl3d, Hitachi RSSG, plain spin echo (SE), the typo TI, and pre/post-contrast"
         " markers (a contrast series is T1; Russian КУ, контраст)"),
    Rule("T2", "T2", "strong",
         contrast("t ?2") + r"|t2w",
         "T2: T2, T2W, T2-weighted"),
    Rule("T2", "T2", "weak",
         word(r"tse|fse|frfse|ssfse|haste|fase|propeller|blade|space|spc|cube|vista|fiesta|ciss|drive"),
         "turbo/fast spin echo and 3D TSE (SPACE, CUBE, VISTA) are T2 unless named otherwise"),
    Rule("phase or magnitude", "Other", "weak",
         word(r"pha ?images?|mag ?images?|magnitude|filtered ?phase|phase ?images?"),
         "the phase or magnitude images of a susceptibility scan saved alone (Siemens SWI Pha_Images /"
         " Mag_Images, GE filtered phase): not the SWI itself, unsure"),
    Rule("PD", "Other", "strong",
         word(r"pdw?|pd ?w|proton ?density|densidad ?protonica|double\w*|dual ?echo|de ?[tf]se|t2 de(?= $)"),
         "proton density, also as the first echo of a PD/T2 double echo (Double_TSE, DE)"),
)

# Which family wins when hits of several families are of the same kind, most specific first.
# "T1 over FLAIR" is GE's "T1 FLAIR" (a T1); FLAIR over T2 is "T2 FLAIR"; PD over T2 is a PD/T2
# dual echo; SWI over T2* is "SWI" named with its gradient echo.
PRECEDENCE = ("ADC", "DWI", "SWI", "T2*", "T1", "FLAIR", "PD", "T2", "phase or magnitude")

# Families named together by convention: a hit of the second beside the first is no conflict.
COMPANIONS = {
    ("ADC", "DWI"),  # ep2d_diff_ADC
    ("SWI", "T2*"),  # SWI gradient echo
    ("SWI", "T2"),  # Siemens t2_swi_tra
    ("T2*", "T2"),  # t2_fl2d_hemo, T2*W
    ("T1", "FLAIR"),  # GE T1 FLAIR
    ("FLAIR", "T2"),  # T2 FLAIR, t2_tirm_dark-fluid
    ("T1", "T2*"),  # T1 GRE / T1 FFE / T1 FE
    ("DWI", "T2"),  # DWI with its T2 (b0) image named
}


@dataclass(frozen=True)
class Decision:
    label: str
    confidence: float
    reason: str  # which rules decided, for people reading a mapping


# Where two words were glued, cut: a lower-case letter before a capital ("ep2ddiffusionADC", "NEUROdwi"),
# a capital before a capitalized word ("HEADCalibration"), capitals before T1/T2 ("BRAINSTRYKERt1AX").
# The rules read the description both as written and cut, so a camel-case name ("MoCo", "dMRI") keeps
# its meaning.
GLUE_BOUNDARY = re.compile(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Z]{2})(?=[A-Z][a-z]{2})|(?<=[A-Z]{3})(?=[Tt][12](?!\d))")


# Cyrillic and Greek letters that look like Latin ones (lower case), typed on a Russian or Greek keyboard
# inside a Latin name: "Т1" with a Cyrillic Т is a T1.
LOOKALIKES = str.maketrans("авекмнорстухτ", "abekmhopctyxt")


def normalize(description: str) -> str:
    """Lower-case words separated by single spaces, padded with one space at each end."""
    text = unicodedata.normalize("NFKC", description).casefold()
    text = re.sub(r"\w+", lambda m: m[0].translate(LOOKALIKES) if re.search("[a-z0-9]", m[0]) else m[0], text)
    # Drop accents from Latin letters only: Japanese voicing marks are part of the letter.
    decomposed = unicodedata.normalize("NFKD", text)
    text = "".join(
        c for i, c in enumerate(decomposed) if not (unicodedata.combining(c) and i and decomposed[i - 1].isascii())
    )
    text = unicodedata.normalize("NFC", text)
    text = re.sub(r"(t2|r2)\s*\*", r" \1star ", text)
    text = re.sub(r"\+\s*c(?![a-z])|(?<![a-z])c\s*\+", " postcontrast ", text)
    text = re.sub(r"[\W_]+", " ", text)
    return f" {text.strip()} "


@lru_cache(maxsize=8192)
def decide(description: str) -> Decision:
    """The label, confidence and reason for one description. Cached: a hinted model's prompt and its
    answer (slm/hints.py) both ask, and a site sends the same descriptions again and again."""
    text = normalize(description)
    if not text.strip():
        return Decision("Other", CONFIDENCE["empty"], "empty description")
    readings = {text, normalize(GLUE_BOUNDARY.sub(" ", description))}
    read = _read(readings)
    if read is None:
        return _read_slips(readings) or Decision("Other", CONFIDENCE["fallback"], "no rule matched")
    return _slip_beside(readings, read) or read


# A slip beside what is read as written, when undone, names the more specific contrast that the other is named
# with by convention ("SAG_T2_FALIR" is a T2 FLAIR, "DWI ACD" an ADC): (label with the slip undone, label as written).
SLIP_OVER = {("FLAIR", "T2"), ("ADC", "DWI")}  # not SWI beside T2: Philips "MSwip ... t2w" is no SWIp


def _read(readings: set[str]) -> Decision | None:
    """What RULES read in any of the readings of one description; None when no rule matched."""
    hits = [rule for rule in RULES if any(rule.matches(reading) for reading in readings)]
    decisive = [rule for rule in hits if rule.kind == "decisive"]
    named = [rule for rule in hits if rule.kind == "strong" and rule.label != "Other"]
    if decisive:
        key = "decisive_over_contrast" if named else "decisive"
        return Decision("Other", CONFIDENCE[key], _reason(decisive))
    for kind in ("strong", "weak"):
        families = {rule.family for rule in hits if rule.kind == kind}
        if families:
            winner = min(families, key=PRECEDENCE.index)
            conflict = any(f != winner and (winner, f) not in COMPANIONS for f in families)
            label = next(rule.label for rule in hits if rule.family == winner)
            key = f"{kind}_conflict" if conflict else kind
            return Decision(label, CONFIDENCE[key], _reason([r for r in hits if r.kind == kind]))
    return None


def _read_slips(readings: set[str]) -> Decision | None:
    """Where no rule matched: one slip of the keyboard undone in one word (a letter struck twice or extra,
    two letters swapped: FLAIIR, SWAAN, falir, ISORTOPIC, DIT for DTI), when what it then reads is read
    outright (a decisive or strong rule, no conflict) and every such undoing reads the same label.
    Missing or wrong letters are not guessed at: too many short words are one letter from a rule's."""
    found = {}
    for reading in readings:
        for variant, slip in _slips_undone(reading):
            decision = _read({variant})
            if decision is not None and decision.confidence >= CONFIDENCE["decisive_over_contrast"]:
                found.setdefault(decision.label, f"{slip}: {decision.reason}")
    if len(found) != 1:
        return None
    (label, reason), = found.items()
    return Decision(label, CONFIDENCE["slip"], reason)


def _slip_beside(readings: set[str], read: Decision) -> Decision | None:
    """A word that reads nothing, with one slip undone, naming the more specific contrast of a pair beside
    what was read as written (SLIP_OVER): "SAG_T2_FALIR" is FLAIR. Word by word, and only where the
    description reads as the pair's other one, so that reading every description stays cheap."""
    if not any(read.label == written for _, written in SLIP_OVER):
        return None
    for word in sorted({word for reading in readings for word in reading.split()}):
        slipped = _word_slipped(word)
        if slipped is not None and (slipped.label, read.label) in SLIP_OVER:
            return Decision(slipped.label, CONFIDENCE["slip"], f"{slipped.reason}; {read.reason}")
    return None


@lru_cache(maxsize=4096)
def _word_slipped(word: str) -> Decision | None:
    """What one word that reads nothing reads outright with one slip undone, every undoing alike (cached:
    words recur)."""
    if sum(c.isalpha() for c in word) < 3 or _read({f" {word} "}) is not None:
        return None
    return _read_slips({f" {word} "})


def _slips_undone(reading: str):
    """(the reading with one slip undone, which) for each word of 3 letters or more: two adjacent letters
    swapped back, and in words of 4 or more, one letter dropped."""
    words = reading.split()
    for i, word in enumerate(words):
        if sum(c.isalpha() for c in word) < 3:
            continue
        fixes = [word[:j] + word[j + 1] + word[j] + word[j + 2:] for j in range(len(word) - 1)
                 if word[j].isalpha() and word[j + 1].isalpha() and word[j] != word[j + 1]]
        if len(word) >= 4:
            fixes += [word[:j] + word[j + 1:] for j in range(len(word)) if word[j].isalpha()]
        for fixed in dict.fromkeys(fixes):
            yield f" {' '.join(words[:i] + [fixed] + words[i + 1:])} ", f"{word} read as {fixed}"


def _reason(rules: Sequence[Rule]) -> str:
    return ", ".join(dict.fromkeys(f"{rule.family} ({rule.kind})" for rule in rules))


class RuleHarmonizer:
    """Harmonizer over RULES; deterministic, no model, no data files."""

    version = "rules-7"  # 2: glued words read; 3: a low-b image alone is Other; 4: typing slips;
    # 5: SWI phase / magnitude images alone are Other, unsure; French T2 EG is T2*; difüzyon, dyfuzja;
    # REFMT and an MPR of a T2 or FLAIR are reformats; 6: FLR is FLAIR, Italian eco gradiente and
    # suscettibilità (issue 14); 7: Russian, Korean and more Chinese names, Cyrillic look-alike letters,
    # FLARE, bolus tracking, MoCo alone is no fMRI, a slip beside a T2 or DWI (SLIP_OVER)

    def harmonize(self, descriptions: Sequence[str], known=None) -> list[Prediction]:
        return [self._predict(text) for text in descriptions]  # rules read no neighbours

    def _predict(self, description: str) -> Prediction:
        decision = decide(description)
        return Prediction(decision.label, decision.confidence, self.version)
