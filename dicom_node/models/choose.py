"""Which model runs: the one place that decides, for the node, its jobs and every command.

The model is the registry's active version when one was promoted, else model.path (+ model.adapter)
of the settings; device, batch size and impression budget always come from the settings' `model`
section. harmonizer.kind then says who maps Series Descriptions: that model ("slm"), the rules
("rules"), or ("auto") the model unless it does not load or its own held-out figures (figures.json)
say the rules did better. Reports are read by the same model, with the rule labeler's labels where
those figures say the rules label better. A version chosen from the registry must still hold the
weights it was registered with.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

from dicom_node.config import ModelSettings, Settings
from dicom_node.models import registry
from dicom_node.store.database import Store
from slm.harmonizer import Harmonizer
from training.gate import read_figures, rules_do_better

log = logging.getLogger(__name__)

HARMONIZER_KINDS = ("auto", "rules", "slm")


@dataclass(frozen=True)
class Choice:
    """A model to load: where it is (with the settings' device and batch sizes) and, when it came from
    the registry, the version its weights must be."""

    model: ModelSettings
    version: str | None = None

    @classmethod
    def of(cls, registered: registry.RegisteredVersion, model: ModelSettings) -> Choice:
        return cls(model.model_copy(update={"path": registered.path, "adapter": registered.adapter}), registered.version)


def choose(settings: Settings, store: Store) -> Choice:
    """The model that runs now: the registry's active version, else the configured one."""
    active = registry.active(store)
    return Choice.of(active, settings.model) if active is not None else Choice(settings.model)


def stored_choice(settings: Settings) -> Choice:
    """`choose` for a command that does not otherwise need the store: a SQLite store not created yet
    has promoted nothing, and is not created by asking."""
    return _from_store(settings, lambda store: choose(settings, store), Choice(settings.model))


def stored_corrections(settings: Settings) -> list[tuple[str, str]]:
    """The store's corrected descriptions and labels (what the node's worker shows a model as labeled
    neighbours), for a command outside the node; none from a SQLite store not created yet."""
    from dicom_node.store.mappings import corrected_labels

    return _from_store(settings, lambda store: corrected_labels(store.engine), [])


def _from_store(settings: Settings, read, default):
    url = make_url(settings.store.url)
    if url.get_backend_name() == "sqlite" and not (url.database and Path(url.database).is_file()):
        return default
    store = Store(settings.store.url, synchronous=settings.store.synchronous)
    try:
        return read(store)
    finally:
        store.close()


def load(choice: Choice):
    """The engine of `choice`; slm.engine.ModelUnavailable when it does not load, or when a registered
    version's folder now holds other weights (a version names one set of weights)."""
    from slm.engine import ModelUnavailable, load_engine

    engine = load_engine(**choice.model.model_dump())
    if choice.version is not None and engine.version != choice.version:
        raise ModelUnavailable(f"{choice.model.path} holds model {engine.version}, not the registered {choice.version}")
    return engine


def harmonizer(settings: Settings, choice: Choice, kind: str | None = None) -> Harmonizer:
    """What maps descriptions: harmonizer.kind (or `kind`) applied to the chosen model."""
    kind = kind or settings.harmonizer.kind
    if kind not in HARMONIZER_KINDS:
        raise ValueError(f"unknown harmonizer kind {kind!r}: {', '.join(HARMONIZER_KINDS)}")
    if kind != "rules":
        from slm.engine import ModelUnavailable

        try:
            return pick_harmonizer(settings, choice, load(choice), kind)
        except ModelUnavailable as exc:
            if kind == "slm":
                raise
            log.warning("no language model (%s); harmonizing with rules instead", exc)
    from slm.rules import RuleHarmonizer

    return RuleHarmonizer()


def pick_harmonizer(settings: Settings, choice: Choice, model, kind: str | None = None) -> Harmonizer:
    """The loaded model, or the rules when harmonizer.kind says so: "rules" always, "auto" when the model's
    own held-out figures (figures.json in its folder) say the rules harmonize better, by more than the
    gate's allowed drop (retraining.gate.max_drop: what the gate calls no worse, auto does too)."""
    kind = kind or settings.harmonizer.kind
    if kind == "slm" or (kind == "auto" and not _rules_do_better(settings, choice, "harmonization_accuracy")):
        return model
    from slm.rules import RuleHarmonizer

    if kind == "auto":
        log.info("harmonizing with rules: on held-out descriptions they beat model %s (its figures.json)", model.version)
    return RuleHarmonizer()


def pick_reader(settings: Settings, choice: Choice, model):
    """What reads reports: the model, or the rule labeler for the labels (impressions still the model's)
    when the model's held-out figures say the rules label better (by more than the gate's allowed drop),
    or when they hold no labeling figure (a harmonization-only retraining never judged it on reports)."""
    figures = held_out_figures(choice)
    unjudged = figures is not None and "labeling_macro_f1" not in figures.get("model", {})
    if not unjudged and not _rules_do_better(settings, choice, "labeling_macro_f1"):
        return model
    why = "it was not judged on reports" if unjudged else "on held-out reports they beat it"
    log.info("labeling reports with rules for model %s: %s (its figures.json)", model.version, why)
    return RuleLabels(model)


class RuleLabels:
    """The rule labeler's labels with the model's impressions, under a version that says both."""

    def __init__(self, model):
        from slm.report_rules import RuleLabeler

        self.model = model
        self.version = f"{model.version}+rule-labels"
        self.label = RuleLabeler().label
        self.impression = model.impression


def _rules_do_better(settings: Settings, choice: Choice, figure: str) -> bool:
    return rules_do_better(held_out_figures(choice), figure, settings.retraining.gate.max_drop.get(figure, 0.0))


def held_out_figures(choice: Choice) -> dict | None:
    """What the chosen model's folder says of it and of the rules on the same held-out examples."""
    from slm.engine import model_folder

    return read_figures(model_folder(choice.model.adapter or choice.model.path))


def report_model(settings: Settings, choice: Choice, harmonizer: Harmonizer):
    """The model for the report job: the harmonizer when it is that model, else the chosen model if it
    loads; None when there is no report job or no model (reports then wait, ingest goes on)."""
    from slm.engine import Engine, ModelUnavailable

    if isinstance(harmonizer, Engine):
        return harmonizer
    if not settings.reports.interval_seconds:
        return None
    try:
        return load(choice)
    except ModelUnavailable as exc:
        log.warning("no model for reports (%s): reports are stored and wait for one; DICOM ingest is not affected", exc)
        return None


def running_version(settings: Settings, store: Store) -> str:
    """The version that maps descriptions in a node started now (what `reharmonize` compares with)."""
    choice = choose(settings, store)
    if choice.version is not None and settings.harmonizer.kind != "rules":
        return choice.version
    from slm.engine import ModelUnavailable

    try:
        return harmonizer(settings, choice).version
    except (ModelUnavailable, ValueError) as exc:
        raise registry.RegistryError(f"cannot tell which model the node runs: {exc}") from None
