"""Realistic brain-MRI Series Descriptions, labelled by construction, from vendor conventions.

The study's in-house descriptions are not public, so the model learns the naming habits of the
scanners instead. Everything here is data, meant to be read as product knowledge:
- TEMPLATES: per vendor and label, the names a scanner or a site gives a series;
- LANGUAGES: the same series named in German, French, Spanish, Dutch, Italian and Japanese;
- ORIENTATIONS, POST_CONTRAST, B_VALUES, DIRECTIONS: what fills a template's {slots};
- HABITS: what sites and scanners do to any name (casing, underscores, "SOURCE - " prefixes,
  "_ND" and "(2)" suffixes, blank padding, typos).
A template fixes the label: a reformat of a T1 ("{acq}_MPR_{O}") is listed under Other, a GE
"T1 FLAIR" under T1, so no rule ever decides a generated label.

Slots: {o} an orientation in the vendor's (or language's) style, {O} the orientation of a reformat,
{c} a post-contrast marker or nothing, {C} a post-contrast marker, {b} a b-value, {n} a number of
diffusion directions, {acq} an acquisition of the same vendor (T1, T2 or FLAIR) being reformatted.
Vendors: "Canon" stands for Canon/Toshiba, "Hitachi" for Hitachi/Fujifilm.
"""

from __future__ import annotations

import csv
import random
import re
import sys
from dataclasses import dataclass
from typing import Mapping

import click
from tqdm import tqdm

from slm.tasks import SERIES_LABELS

VENDORS = ("Siemens", "GE", "Philips", "Canon", "Hitachi")

TEMPLATES: dict[str, dict[str, list[str]]] = {
    "Siemens": {
        "T1": ["t1_mprage_{o}_p2_iso{c}", "t1_mprage_{o}{c}", "t1_mpr_ns_{o}_p2_iso{c}", "MPRAGE{c}",
               "MPRAGE GRAPPA2{c}", "Accelerated Sagittal MPRAGE", "ME-MPRAGE_{o}", "t1_se_{o}{c}", "t1_tse_{o}{c}",
               "t1_fl2d_{o}{c}", "t1_vibe_{o}_fs{c}", "t1_fl3d_{o}_p2_iso{c}", "t1_space_{o}_p2_iso{c}",
               "t1_flair_{o}{c}", "t1_mprage_{o}_p2_iso{C}", "t1_starvibe_{o}{C}"],
        "T2": ["t2_tse_{o}", "t2_tse_{o}_512", "t2_tse_{o}_p2", "t2_blade_{o}", "t2_tse_blade_{o}",
               "t2_space_{o}_p2_iso", "t2_haste_{o}", "T2 TSE {o}", "t2_tse_fs_{o}"],
        "FLAIR": ["t2_tirm_{o}_dark-fluid", "t2_tse_dark-fluid_{o}", "t2_flair_{o}", "t2_space_dark-fluid_{o}_p2_iso",
                  "t2_spc_da-fl_{o}_p2_iso", "t2_tirm_{o}_dark-fluid{c}", "t2_flair_{o}_fs", "FLAIR_{o}",
                  "t2_spc_flair_{o}_p2_iso"],
        "DWI": ["ep2d_diff_3scan_trace_p2", "ep2d_diff_3scan_trace_p2_TRACEW", "ep2d_diff_{o}_b{b}_TRACEW",
                "ep2d_diff_mddw_{n}_p2", "resolve_4scan_trace_{o}_TRACEW", "DWI_{o}_b{b}", "ep2d_diff_{o}",
                "dMRI_dir{n}_AP", "DTI_{n}dir", "ep2d_diff_mddw_{n}_p2_TRACEW"],
        "ADC": ["ep2d_diff_3scan_trace_p2_ADC", "ep2d_diff_mddw_{n}_p2_ADC", "resolve_4scan_trace_{o}_ADC",
                "ep2d_diff_{o}_b{b}_ADC", "DWI_{o}_ADC", "ADC"],
        "SWI": ["t2_swi_{o}_p2_2mm", "SWI_Images", "t2_swi3d_{o}", "swi_{o}", "t2_swi_{o}_p2_1.5mm_SWI"],
        "Other": ["localizer", "AAHead_Scout_32ch-head-coil", "AAHead_Scout_32ch-head-coil_MPR_{O}", "{acq}_MPR_{O}",
                  "mIP_Images(SW)", "ep2d_perf", "ep2d_perf_p2{c}", "ep2d_pasl", "tgse_pcasl_PLD2000", "relCBF",
                  "relCBV", "tof_fl3d_{o}_p2_multi-slab", "tof_fl3d_{o}_multi-slab_MIP_{O}", "gre_field_mapping",
                  "svs_se_30", "svs_se_135", "csi_se_135", "ep2d_bold_moco", "ep2d_bold_resting", "MoCoSeries",
                  "t2_fl2d_{o}_hemo", "t2_medic_{o}", "T2*_gre_{o}", "pd_tse_{o}", "ep2d_diff_mddw_{n}_p2_FA",
                  "ep2d_diff_mddw_{n}_p2_ColFA", "ep2d_diff_mddw_{n}_p2_TENSOR", "PhoenixZIPReport",
                  "t1_mprage_{o}_p2_iso_MPR_{O}", "t2_swi_{o}_p2_2mm_mIP"],
    },
    "GE": {
        "T1": ["{o} T1 SE{c}", "{o} T1 FLAIR{c}", "{o} T1{c}", "Sag 3D BRAVO{c}", "{o} 3D BRAVO{c}", "Sag IR-FSPGR",
               "Accelerated Sag IR-FSPGR", "{o} 3D FSPGR{c}", "{o} SPGR{c}", "{o} T1 FLAIR PROPELLER{c}",
               "Sag CUBE T1{c}", "{o} T1 FSE{c}", "{o} T1 FLAIR{C}", "{o} 3D SPGR{C}"],
        "T2": ["{o} T2 FSE", "{o} T2 FRFSE", "{o} T2 PROPELLER", "{o} T2", "Sag CUBE T2", "{o} T2 FSE ASSET",
               "{o} T2 SSFSE"],
        "FLAIR": ["{o} T2 FLAIR", "{o} FLAIR", "Sag CUBE FLAIR", "{o} T2 FLAIR PROPELLER", "{o} FLAIR{c}",
                  "Sag 3D FLAIR", "{o} CUBE FLAIR"],
        "DWI": ["{o} DWI", "{o} DWI {b}b", "{o} DWI ASSET", "{o} DWI b={b}", "{o} DTI {n} dir", "ISOTROPIC",
                "{o} DIFFUSION", "{o} DWI {b}b ASSET"],
        "ADC": ["Apparent Diffusion Coefficient (mm2/s)", "ADC (10^-6 mm²/s)", "{o} ADC", "ADC",
                "{o} DWI {b}b ADC"],
        "SWI": ["{o} SWAN", "SWAN 3D", "{o} 3D SWAN", "SWAN"],
        "Other": ["3-Plane Loc", "3 Plane Loc", "Loc", "ASSET Calibration", "PURE Calibration", "{o} T2* GRE",
                  "{o} GRE", "{o} MERGE", "{o} PD FSE", "3D TOF", "{o} 3D TOF", "3D ASL", "{o} 3D pCASL",
                  "Cerebral Blood Flow", "{o} DSC Perfusion{c}", "PROBE-P", "{o} DTI FA", "Reformatted",
                  "{o} 3D TOF MIP", "Screen Save", "rsfMRI", "{acq} MPR {O}", "{o} SWAN minIP"],
    },
    "Philips": {
        "T1": ["T1W_SE{c}", "T1W_3D_TFE{c}", "sT1W_3D_TFE{c}", "T1W_FFE{c}", "3D_T1_TFE{c}", "T1W_IR", "{o}_T1W_SE{c}",
               "T1W_TSE{c}", "MPRAGE SENSE2", "T1 3D TFE{C}", "T1W_3D_TFE{C}"],
        "T2": ["T2W_TSE", "{o}_T2W_TSE", "T2W_TSE_SENSE", "sT2W_TSE", "T2W_DRIVE", "3D_T2W_VISTA", "T2W_MultiVane"],
        "FLAIR": ["T2W_FLAIR", "{o}_FLAIR", "3D_FLAIR", "3D_FLAIR_VISTA", "sT2W_FLAIR", "T2W_FLAIR_SENSE",
                  "{o}_FLAIR{c}"],
        "DWI": ["DWI_SSh", "DWI_SENSE", "DW_SSh_b{b}", "DTI_{n}dir", "DTI_SSh", "DWI", "{o}_DWI_b{b}"],
        "ADC": ["dADC", "ADC", "DWI_SSh_ADC", "dADC_DWI_SENSE", "Average DC"],
        "SWI": ["SWIp", "sSWIp", "VenBOLD", "SWI", "3D_SWIp"],
        "Other": ["Survey", "SmartBrain", "SENSE_Ref", "CoilSurvey", "T2*W_FFE", "T2*_FFE", "PDW_TSE", "PD_TSE",
                  "3D_TOF", "TOF_MRA", "PCA_{o}", "pCASL", "B0_map", "PRESS_SV", "FA_DTI", "faReg - DTI_SSh",
                  "{acq} MPR {O}", "MIP_TOF_{O}"],
    },
    "Canon": {
        "T1": ["T1_SE_{o}{c}", "T1 {o}{c}", "T1W_SE_{o}{c}", "3D_MPRAGE{c}", "{o} T1 FLAIR{c}", "3D T1 FE{c}",
               "T1_SE_{o}{C}"],
        "T2": ["T2_FSE_{o}", "T2 {o}", "T2W_FSE_{o}", "T2 FASE {o}", "T2_3D_FSE"],
        "FLAIR": ["FLAIR_{o}", "T2_FLAIR_{o}", "FLAIR_3D", "FLAIR {o}{c}"],
        "DWI": ["DWI_{o}", "DWI_b{b}", "DWI_{o}_b{b}", "isoDWI", "DTI_{n}axis"],
        "ADC": ["ADC", "ADC_{o}", "isoADC", "ADC MAP"],
        "SWI": ["SWI_{o}", "SWI", "3D SWI"],
        "Other": ["Locator", "LOCATOR", "T2*_{o}", "T2* FE {o}", "PD_FSE_{o}", "MRA_TOF", "TOF_3D", "ASL", "MRS_SVS",
                  "Calibration", "{acq} MPR {O}", "MIP {O}"],
    },
    "Hitachi": {
        "T1": ["T1W_SE_{o}{c}", "T1W_{o}{c}", "3D_T1W_RSSG{c}", "T1W_IR_{o}", "T1W_FLAIR_{o}{c}", "T1W_SE_{o}{C}"],
        "T2": ["T2W_FSE_{o}", "T2W_{o}", "T2W_FSE"],
        "FLAIR": ["FLAIR_{o}", "T2W_FLAIR_{o}", "3D_FLAIR"],
        "DWI": ["DWI_{o}_b{b}", "DWI_b{b}", "DWI", "DWI_{o}"],
        "ADC": ["ADC", "ADC_{o}", "ADC MAP"],
        "SWI": ["SWI_{o}", "SWI"],
        "Other": ["LOCALIZER", "SCOUT", "T2*W_GRE_{o}", "T2*W_GE_{o}", "PDW_FSE_{o}", "TOF_3D", "MRA_TOF_3D", "ASL",
                  "Calibration", "{acq} MPR {O}"],
    },
}

# The same series named by sites working in other languages (any vendor).
LANGUAGES: dict[str, dict[str, list[str]]] = {
    "German": {
        "T1": ["T1 {o} nach KM", "T1 SE {o}", "T1 {o} KM", "T1 MPRAGE {o} nach KM", "T1 {o}"],
        "T2": ["T2 TSE {o}", "T2 {o}"],
        "FLAIR": ["FLAIR {o}", "T2 FLAIR {o}"],
        "DWI": ["Diffusion {o}", "DWI {o} b{b}"],
        "ADC": ["ADC Karte", "ADC {o}"],
        "SWI": ["SWI {o}", "Suszeptibilität {o}"],
        "Other": ["Übersicht", "T2* {o} Hämosiderin", "Perfusion", "TOF Angio"],
    },
    "French": {
        "T1": ["T1 {o} gado", "T1 {o} après injection", "T1 {o}", "T1 3D gado"],
        "T2": ["T2 {o}", "T2 TSE {o}"],
        "FLAIR": ["FLAIR {o}", "FLAIR 3D"],
        "DWI": ["Diffusion {o}", "Diffusion b{b}"],
        "ADC": ["Carte ADC", "Coefficient de diffusion apparent"],
        "SWI": ["SWI {o}"],
        "Other": ["Repérage", "T2 étoile {o}", "Perfusion", "Angio TOF", "Spectroscopie"],
    },
    "Spanish": {
        "T1": ["T1 {o} con contraste", "T1 {o}", "T1 {o} con gadolinio"],
        "T2": ["T2 {o}"],
        "FLAIR": ["FLAIR {o}"],
        "DWI": ["Difusión {o}", "Difusión b{b}"],
        "ADC": ["Mapa ADC", "Coeficiente de difusión aparente"],
        "SWI": ["SWI {o}", "Susceptibilidad {o}"],
        "Other": ["Localizador", "T2 eco de gradiente {o}", "Perfusión", "Angio TOF", "Espectroscopia"],
    },
    "Dutch": {
        "T1": ["T1 {o} na contrast", "T1 {o}"],
        "T2": ["T2 {o}"],
        "FLAIR": ["FLAIR {o}"],
        "DWI": ["Diffusie {o}", "DWI {o}"],
        "ADC": ["ADC"],
        "SWI": ["SWI {o}"],
        "Other": ["Survey", "Perfusie", "TOF angio"],
    },
    "Italian": {
        "T1": ["T1 {o} con mdc", "T1 {o} post mdc", "T1 {o}"],
        "T2": ["T2 {o}"],
        "FLAIR": ["FLAIR {o}"],
        "DWI": ["Diffusione {o}"],
        "ADC": ["Mappa ADC"],
        "SWI": ["SWI {o}"],
        "Other": ["Localizzatore", "Perfusione", "Angio TOF"],
    },
    "Japanese": {
        "T1": ["T1強調像 {o}", "造影T1強調像 {o}", "T1WI {o}"],
        "T2": ["T2強調像 {o}", "T2WI {o}"],
        "FLAIR": ["FLAIR {o}", "FLAIR像 {o}"],
        "DWI": ["拡散強調像 {o}", "DWI {o}"],
        "ADC": ["ADC", "ADCマップ", "見かけの拡散係数"],
        "SWI": ["磁化率強調像", "SWI {o}"],
        "Other": ["位置決め", "T2*強調像 {o}", "MRA", "頭部MRA", "灌流画像"],
    },
}

# How each vendor or language names the acquisition plane ({o}); reformats use {O}.
ORIENTATIONS = {
    "Siemens": ["tra", "sag", "cor"],
    "GE": ["Ax", "Sag", "Cor", "AX", "SAG", "COR", "Axial", "Sagittal", "Coronal"],
    "Philips": ["AX", "SAG", "COR", "TRA", "ax", "sag", "cor"],
    "Canon": ["AX", "SAG", "COR", "Ax", "Sag", "Cor"],
    "Hitachi": ["AX", "SAG", "COR", "TRA"],
    "German": ["tra", "transversal", "sagittal", "koronar", "cor"],
    "French": ["axial", "sagittal", "coronal", "ax"],
    "Spanish": ["axial", "sagital", "coronal"],
    "Dutch": ["transversaal", "sagittaal", "coronaal", "tra"],
    "Italian": ["assiale", "sagittale", "coronale"],
    "Japanese": ["横断", "矢状断", "冠状断", "AX"],
}
REFORMAT_ORIENTATIONS = ["Tra", "Sag", "Cor", "TRA", "SAG", "COR", "Ax", "AX"]

# Post-contrast markers as each vendor's sites append them ({c} and {C}).
POST_CONTRAST = {
    "Siemens": ["_post", "_KM", "_Gd", "+C", "_post_Gd", "_+Gd"],
    "GE": [" +C", " POST", " C+", " GAD", " w/ contrast", " POST GAD"],
    "Philips": ["_Gd", " +C", "_POST", "_CE", "_gado"],
    "Canon": [" +C", " Gd", " post", " GD"],
    "Hitachi": [" +C", " Gd", "_CE", " POST"],
}
POST_CONTRAST_RATE = 0.3  # how often an optional {c} is filled
B_VALUES = ["500", "800", "1000", "1000", "1000", "1500", "2000", "3000"]
DIRECTIONS = ["6", "12", "15", "20", "25", "30", "32", "64"]
REFORMAT_SOURCES = ("T1", "T2", "FLAIR")  # what {acq} reformats


@dataclass(frozen=True)
class Habits:
    """What sites and scanners do to any name, each with its rate."""

    language: float = 0.12  # named in another language (LANGUAGES)
    upper: float = 0.2  # whole name upper case
    lower: float = 0.1  # whole name lower case
    underscores: float = 0.12  # spaces written as underscores (file-system forms of the value)
    spaces: float = 0.05  # underscores written as spaces
    prefix: float = 0.1  # a site, vendor or numbering prefix (PREFIXES)
    suffix: float = 0.12  # a scanner or repeat suffix (SUFFIXES)
    padding: float = 0.04  # blanks before or after the name (kept: they are part of the value)
    typo: float = 0.03  # one slip of the keyboard on a letter
    glued: float = 0.06  # every separator dropped, words run together ("ep2ddiffusionADC", "AXT2FLAIR")
    folder: float = 0.06  # a folder name made of it: "<series number>-<name>-<number>" ("7-AX_T2_FLAIR-48213")
    site_word: float = 0.04  # a site or protocol word glued in front ("BRAINSTRYKERt1AX")


PREFIXES = {
    "Siemens": ["ADNI ", "Brain_", "HEAD ", "3_", "s005_"],
    "GE": ["PU:", "ADNI ", "Brain ", "NEURO ", "5 "],
    "Philips": ["WIP ", "SOURCE - ", "DelRec - ", "Reg - "],
    "Canon": ["Brain ", "HEAD_", "2_"],
    "Hitachi": ["HEAD ", "Brain_", "4 "],
}
SITE_WORDS = ["BRAIN", "HEAD", "NEURO", "STROKE", "STRYKER", "MS", "EPI", "TUMOR", "Brain", "Kopf", "routine"]
SUFFIXES = {
    "Siemens": ["_ND", "_DIS2D", "_DIS3D", "(2)", "_repeat", "_NORM", " #2"],
    "GE": [" 2", " REPEAT", " ASSET", " (2)"],
    "Philips": [" SENSE", "_SENSE", " CLEAR", "_2", " (2)"],
    "Canon": ["_2", " REPEAT", "(2)"],
    "Hitachi": ["_2", " REPEAT", "(2)"],
}

_SLOT = re.compile(r"\{(\w+)\}")


def generate(
    n: int,
    seed: int = 0,
    class_weights: Mapping[str, float] | None = None,
    habits: Habits = Habits(),
    progress: bool = False,
) -> list[tuple[str, str, str]]:
    """n (description, label, vendor) triples; the same n, seed and settings give the same list.

    Each label gets its share of n by class_weights (equal by default), rounded so the counts sum to n.
    """
    rng = random.Random(seed)
    labels = _label_sequence(n, class_weights or {label: 1.0 for label in SERIES_LABELS})
    rng.shuffle(labels)
    samples = []
    for label in tqdm(labels, desc="series descriptions", disable=not progress):
        vendor = rng.choice(VENDORS)
        samples.append((describe(rng, label, vendor, habits), label, vendor))
    return samples


def _label_sequence(n: int, weights: Mapping[str, float]) -> list[str]:
    unknown = set(weights) - set(SERIES_LABELS)
    if unknown or any(w < 0 for w in weights.values()) or not sum(weights.values()):
        raise ValueError(f"class weights must be non-negative over {SERIES_LABELS}, not {dict(weights)}")
    total = sum(weights.values())
    shares = {label: n * weights.get(label, 0.0) / total for label in SERIES_LABELS}
    counts = {label: int(share) for label, share in shares.items()}
    # Largest remainders first, so the counts sum to n.
    for label in sorted(SERIES_LABELS, key=lambda l: counts[l] - shares[l])[: n - sum(counts.values())]:
        counts[label] += 1
    return [label for label in SERIES_LABELS for _ in range(counts[label])]


def describe(rng: random.Random, label: str, vendor: str, habits: Habits = Habits()) -> str:
    """One description of a series of this label, named the way this vendor's sites might."""
    if rng.random() < habits.language:
        language = rng.choice(list(LANGUAGES))
        text = _fill(rng, rng.choice(LANGUAGES[language][label]), vendor, language)
    else:
        text = _fill(rng, rng.choice(TEMPLATES[vendor][label]), vendor, vendor)
    return _apply_habits(rng, text, vendor, habits)


def _fill(rng: random.Random, template: str, vendor: str, style: str) -> str:
    def slot(match: re.Match) -> str:
        name = match.group(1)
        if name == "o":
            return rng.choice(ORIENTATIONS[style])
        if name == "O":
            return rng.choice(REFORMAT_ORIENTATIONS)
        if name == "c":
            return rng.choice(POST_CONTRAST[vendor]) if rng.random() < POST_CONTRAST_RATE else ""
        if name == "C":
            return rng.choice(POST_CONTRAST[vendor])
        if name == "b":
            return rng.choice(B_VALUES)
        if name == "n":
            return rng.choice(DIRECTIONS)
        if name == "acq":
            source = rng.choice(TEMPLATES[vendor][rng.choice(REFORMAT_SOURCES)])
            return _fill(rng, source, vendor, vendor)
        raise KeyError(f"unknown slot {{{name}}} in template {template!r}")

    return _SLOT.sub(slot, template)


def _apply_habits(rng: random.Random, text: str, vendor: str, habits: Habits) -> str:
    if rng.random() < habits.prefix:
        text = rng.choice(PREFIXES[vendor]) + text
    if rng.random() < habits.suffix:
        text += rng.choice(SUFFIXES[vendor])
    if rng.random() < habits.typo:
        text = _typo(rng, text)
    casing = rng.random()
    if casing < habits.upper:
        text = text.upper()
    elif casing < habits.upper + habits.lower:
        text = text.lower()
    separators = rng.random()
    if separators < habits.underscores:
        text = text.replace(" ", "_")
    elif separators < habits.underscores + habits.spaces:
        text = text.replace("_", " ")
    if rng.random() < habits.site_word:
        text = rng.choice(SITE_WORDS) + text
    if rng.random() < habits.glued:
        text = re.sub(r"[\s_\-]+", "", text)
    if rng.random() < habits.folder:
        text = f"{rng.randint(1, 30)}-{re.sub(r'[^0-9A-Za-z]+', '_', text).strip('_')}-{rng.randint(10000, 99999)}"
    if rng.random() < habits.padding:
        blanks = " " * rng.randint(1, 11)
        text = blanks + text if rng.random() < 0.7 else text + blanks
    return text


# Site dialects: a site's own name for a protocol ("DarkFluid", "NEURO_VOREX"), unknown to any rule or
# vendor, used for one label across that site's descriptions. They are what a site corrects and what a
# model reading labeled neighbours (slm/neighbours.py) must learn to follow where the rules read nothing:
# only another description of the same site says what the word means.
DIALECT_FORMS = ["{w}", "{o} {w}", "{w} {o}", "{w}_{o}", "{w} {o}{c}", "{site}_{w}_{o}", "{w}{n}", "{o}_{w}_{n}"]
SYLLABLES = [c + v for c in "bdfgkmnprstvxz" for v in "aeiou"]


def dialects(n: int, seed: int = 0, per_word: int = 4) -> list[tuple[str, str, str]]:
    """About n (description, label, site) triples from invented site dialects: each site names two or
    three labels with words of its own, each word used in `per_word` descriptions of that label."""
    rng = random.Random(f"dialect-{seed}")
    samples: list[tuple[str, str, str]] = []
    while len(samples) < n:
        site = f"site{len(samples)}"
        vendor = rng.choice(VENDORS)
        for label in rng.sample(SERIES_LABELS, rng.randint(2, 3)):
            word = "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 3)))
            word = rng.choice([word, word.upper(), word.capitalize()])
            for _ in range(per_word):
                text = rng.choice(DIALECT_FORMS).format(
                    w=word, o=rng.choice(ORIENTATIONS[vendor]),
                    c=rng.choice(POST_CONTRAST[vendor]) if rng.random() < POST_CONTRAST_RATE else "",
                    site=rng.choice(SITE_WORDS), n=f"_{rng.randint(2, 9)}" if rng.random() < 0.5 else "")
                samples.append((_apply_habits(rng, text, vendor, Habits(language=0, typo=0)), label, site))
    return samples[:n]


def _typo(rng: random.Random, text: str) -> str:
    """Swap a letter with the next one, drop it or double it."""
    letters = [i for i, ch in enumerate(text) if ch.isalpha()]
    if not letters:
        return text
    i = rng.choice(letters)
    slip = rng.choice(("swap", "drop", "double"))
    if slip == "swap" and i + 1 < len(text):
        return text[:i] + text[i + 1] + text[i] + text[i + 2:]
    if slip == "drop":
        return text[:i] + text[i + 1:]
    return text[:i] + text[i] + text[i:]


def write_csv(samples: list[tuple[str, str, str]], stream) -> None:
    writer = csv.writer(stream, quoting=csv.QUOTE_ALL)
    writer.writerow(("description", "label", "vendor"))
    writer.writerows(samples)


def _parse_weight(ctx, param, values) -> dict[str, float] | None:
    weights = {}
    for value in values:
        label, _, weight = value.partition("=")
        try:
            weights[label] = float(weight)
        except ValueError:
            raise click.BadParameter(f"{value!r} is not LABEL=WEIGHT") from None
        if label not in SERIES_LABELS:
            raise click.BadParameter(f"{label!r} is not one of {', '.join(SERIES_LABELS)}")
    return {label: weights.get(label, 1.0) for label in SERIES_LABELS} if weights else None


@click.command()
@click.option("--n", "n", type=click.IntRange(min=0), default=5000, show_default=True, help="How many descriptions.")
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed, same descriptions.")
@click.option("--weight", "weights", multiple=True, callback=_parse_weight,
              help="LABEL=WEIGHT, repeatable (labels not named weigh 1); default: equal classes.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True), default=None,
              help="CSV file to write (description, label, vendor); default: standard output.")
def main(n: int, seed: int, weights: dict[str, float] | None, output: str | None) -> None:
    """Write generated brain-MRI series descriptions with their labels as CSV."""
    samples = generate(n, seed, class_weights=weights, progress=output is not None)
    if output is None:
        write_csv(samples, sys.stdout)
        return
    with open(output, "w", newline="", encoding="utf-8") as stream:
        write_csv(samples, stream)
    click.echo(f"wrote {len(samples)} descriptions to {output}", err=True)


if __name__ == "__main__":
    main()
