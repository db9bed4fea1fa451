"""Typed settings, read once from YAML and passed down.

Every key is documented in config/default.yaml. A wrong type, an unknown key (with the nearest valid
one) or a missing file is a ConfigError that names the file and the key, so a PACS administrator can
fix the file without reading a traceback. Relative paths in a file are relative to that file's folder,
so a command finds the same store from any folder.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from sqlalchemy.engine import make_url

from slm.consensus import SAMPLES as IMPRESSION_SAMPLES
from slm.tasks import IMPRESSION_MAX_TOKENS, SERIES_LABELS
from training.gate import GATE_FIGURES

CONFIG_ENV = "SLMNODE_CONFIG"


class ConfigError(Exception):
    """A configuration file that cannot be used as it is."""


class _Section(BaseModel):
    # strict: "104" is not a port; forbid: a misspelt key is an error, not a silent default.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class TLSSettings(_Section):
    enabled: bool = False
    certificate: str | None = None
    private_key: str | None = None
    ca_certificates: str | None = None
    verify_clients: bool = False


class DicomSettings(_Section):
    ae_title: str = Field("SLMNODE", min_length=1, max_length=16)
    bind_address: str = "0.0.0.0"
    port: int = Field(11112, ge=0, le=65535)
    max_associations: int = Field(16, ge=1)
    max_pending_connections: int = Field(32, ge=1)
    allowed_calling_aes: list[str] = []
    allowed_addresses: list[str] = []
    tls: TLSSettings = TLSSettings()
    network_timeout: float = Field(60.0, gt=0, strict=False)
    check_called_ae: bool = False  # refuse associations addressed to another AE title than ae_title
    acse_timeout: float = Field(10.0, gt=0, strict=False)
    max_inflated_megabytes: int = Field(256, ge=1)


class StorageSettings(_Section):
    mode: Literal["metadata", "files"] = "metadata"
    folder: str = "received"


class StoreSettings(_Section):
    url: str = "sqlite:///slmnode.sqlite"
    keep_patient_identifiers: bool = False
    synchronous: Literal["full", "normal"] = "full"


class ModelSettings(_Section):
    path: str = "embedded"
    adapter: str | None = None
    device: str = "auto"
    batch_size: int = Field(32, ge=1)
    impression_max_tokens: int = Field(IMPRESSION_MAX_TOKENS, ge=1)
    impression_samples: int = Field(IMPRESSION_SAMPLES, ge=0)  # 0: the greedy impression alone


class HarmonizerSettings(_Section):
    kind: Literal["auto", "rules", "slm"] = "auto"
    modalities: list[str] = ["MR"]  # series of other modalities are stored, not harmonized
    batch_size: int = Field(64, ge=1)
    poll_seconds: float = Field(2.0, gt=0, strict=False)
    claim_seconds: float = Field(120.0, gt=0, strict=False)
    retry_seconds: float = Field(30.0, gt=0, strict=False)
    max_retry_seconds: float = Field(3600.0, gt=0, strict=False)


class ReportScopeSettings(_Section):
    """Which reports the job labels: those of chest radiographs (dicom_node/reports/scope.py)."""

    modalities: list[str] = ["CR", "DX"]
    body_parts: list[str] = ["CHEST", "THORAX", "LUNG"]
    words: list[str] = ["chest", "thorax", "thoracic", "cxr", "lung", "lungs"]
    other_words: list[str] = ["ct", "cta", "mr", "mri", "mra", "pet", "nm", "us", "ultrasound", "spect", "fluoro"]
    unknown: Literal["label", "skip"] = "label"


class ReportSettings(_Section):
    interval_seconds: float = Field(60.0, ge=0, strict=False)
    batch_size: int = Field(16, ge=1)
    queue_size: int = Field(64, ge=1)
    claim_seconds: float = Field(900.0, gt=0, strict=False)
    retry_seconds: float = Field(60.0, gt=0, strict=False)
    max_retry_seconds: float = Field(3600.0, gt=0, strict=False)
    threads: int = Field(1, ge=1)
    ingest_quiet_seconds: float = Field(5.0, ge=0, strict=False)
    scope: ReportScopeSettings = ReportScopeSettings()


class GateSettings(_Section):
    max_drop: dict[str, float] = {
        "harmonization_accuracy": 0.02,
        "corrections_accuracy": 0.0,
        "labeling_macro_f1": 0.02,
        "impression_rouge_l": 0.02,
    }

    @field_validator("max_drop")
    @classmethod
    def _known_figures(cls, value: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(value) - set(GATE_FIGURES))
        if unknown:
            raise ValueError(f"unknown figures {', '.join(unknown)}; the gate knows {', '.join(GATE_FIGURES)}")
        return value


class RetrainingSettings(_Section):
    recipe: str = "retrain_harmonize"
    data: str | None = None
    models_folder: str = "models"
    corrections_weight: float = Field(10.0, gt=0, strict=False)
    eval_limit: int | None = Field(200, ge=1)
    gate: GateSettings = GateSettings()
    schedule: str | None = None
    follow_seconds: float = Field(30.0, gt=0, strict=False)

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is not None:
            from apscheduler.triggers.cron import CronTrigger

            try:
                CronTrigger.from_crontab(value)
            except ValueError as exc:
                raise ValueError(f"{value!r} is not a cron expression (minute hour day month weekday): {exc}") from None
        return value


class HL7Settings(_Section):
    enabled: bool = False
    bind_address: str = "127.0.0.1"
    port: int = Field(2575, ge=0, le=65535)
    allowed_addresses: list[str] = []
    max_message_bytes: int = Field(4_000_000, ge=1)
    network_timeout: float = Field(60.0, gt=0, strict=False)


class OrthancSettings(_Section):
    url: str | None = None
    username: str | None = None
    password: str | None = None
    metadata: str = Field("SeriesClass", min_length=1)
    poll_seconds: float = Field(5.0, gt=0, strict=False)
    timeout: float = Field(10.0, gt=0, strict=False)


class RouteWhen(_Section):
    """What a series must be for a rule to forward it; an empty list matches anything."""

    labels: list[str] = []
    modalities: list[str] = []
    calling_aes: list[str] = []
    min_confidence: float = Field(0.0, ge=0, le=1, strict=False)

    @field_validator("labels")
    @classmethod
    def _known_labels(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(SERIES_LABELS))
        if unknown:
            raise ValueError(f"unknown labels {', '.join(unknown)}; the labels are {', '.join(SERIES_LABELS)}")
        return value


class RouteDestination(_Section):
    ae_title: str = Field(min_length=1, max_length=16)
    host: str
    port: int = Field(ge=1, le=65535)
    tls: bool = False
    ca_certificates: str | None = None  # verify the destination against these (else the system's)
    certificate: str | None = None  # our client certificate, when the destination asks for one
    private_key: str | None = None


class RouteRule(_Section):
    name: str = Field(min_length=1, max_length=64)  # what "forwarded once per rule" counts by; keep it stable
    when: RouteWhen = RouteWhen()
    send_to: RouteDestination


class RoutingSettings(_Section):
    rules: list[RouteRule] = []
    batch_size: int = Field(64, ge=1)
    poll_seconds: float = Field(2.0, gt=0, strict=False)
    retry_seconds: float = Field(10.0, gt=0, strict=False)
    max_retry_seconds: float = Field(600.0, gt=0, strict=False)
    max_attempts: int = Field(5, ge=1)
    claim_seconds: float = Field(300.0, gt=0, strict=False)
    timeout: float = Field(30.0, gt=0, strict=False)

    @field_validator("rules")
    @classmethod
    def _unique_names(cls, value: list[RouteRule]) -> list[RouteRule]:
        names = [rule.name for rule in value]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(f"rule names must be unique: {', '.join(twice)}")
        return value


class LoggingSettings(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    file: str | None = None


class WebTLSSettings(_Section):
    certificate: str | None = None
    private_key: str | None = None


class WebSettings(_Section):
    enabled: bool = False
    bind_address: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    tls: WebTLSSettings = WebTLSSettings()
    session_hours: float = Field(12.0, gt=0, strict=False)
    max_failed_logins: int = Field(5, ge=1)
    lockout_seconds: float = Field(300.0, gt=0, strict=False)


class Settings(_Section):
    dicom: DicomSettings = DicomSettings()
    storage: StorageSettings = StorageSettings()
    store: StoreSettings = StoreSettings()
    model: ModelSettings = ModelSettings()
    harmonizer: HarmonizerSettings = HarmonizerSettings()
    reports: ReportSettings = ReportSettings()
    retraining: RetrainingSettings = RetrainingSettings()
    logging: LoggingSettings = LoggingSettings()
    routing: RoutingSettings = RoutingSettings()
    hl7: HL7Settings = HL7Settings()
    orthanc: OrthancSettings = OrthancSettings()
    web: WebSettings = WebSettings()

    @model_validator(mode="after")
    def _routing_needs_files(self) -> Settings:
        if self.routing.rules and self.storage.mode != "files":
            raise ValueError(
                "routing rules forward the instances as received, so they need storage.mode: files "
                f"(it is {self.storage.mode})"
            )
        return self


def load_settings(path: str | os.PathLike | None = None) -> Settings:
    """Settings from `path`, else from $SLMNODE_CONFIG, else the built-in defaults (paths then
    relative to the current folder); a file's relative paths are relative to its folder."""
    path = path or os.environ.get(CONFIG_ENV)
    if not path:
        return Settings()
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: configuration file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(_problem(err) for err in exc.errors())
        raise ConfigError(f"{path}: {problems}") from None
    return relative_to(settings, path.resolve().parent)


def _problem(err) -> str:
    """One validation error as `dicom.prot: unknown key (did you mean dicom.port?)`."""
    where = ".".join(str(part) for part in err["loc"])
    if err["type"] != "extra_forbidden":
        message = err["msg"].removeprefix("Value error, ")  # our validators' own words, without pydantic's prefix
        return f"{where}: {message}" if where else message  # a check across sections has no key of its own
    section: type[BaseModel] = Settings
    for part in err["loc"][:-1]:  # the model the unknown key sits in
        annotation = section.model_fields[part].annotation
        section = next((a for a in (annotation, *getattr(annotation, "__args__", ())) if isinstance(a, type)
                        and issubclass(a, BaseModel)), None)
        if section is None:
            return f"{where}: unknown key"
    near = difflib.get_close_matches(str(err["loc"][-1]), section.model_fields, n=1, cutoff=0.5)
    parent = "".join(f"{part}." for part in err["loc"][:-1])
    return f"{where}: unknown key" + (f" (did you mean {parent}{near[0]}?)" if near else "")


def relative_to(settings: Settings, folder: Path) -> Settings:
    """`settings` with every relative path made absolute under `folder`: the SQLite store, the storage
    folder, the TLS files (DICOM, web, routing destinations), the log file, a model or adapter folder, the
    retraining recipe file, models folder and data folder. "embedded", hub ids and shipped recipe names
    stay as they are."""

    def path(value: str | None) -> str | None:
        return value if value is None or Path(value).is_absolute() else str(folder / value)

    def files(section: BaseModel, *names: str) -> BaseModel:
        return section.model_copy(update={name: path(getattr(section, name)) for name in names})

    def model_path(value: str) -> str:
        # "org/model" is a hub id unless a folder of that name is there; "./x" and "../x" are folders.
        local = value.startswith(".") or (folder / value).exists()
        return path(value) if value != "embedded" and local else value

    def recipe(value: str) -> str:
        return path(value) if "/" in value or value.endswith(".yaml") else value  # else a shipped recipe's name

    url, sqlite = settings.store.url, make_url(settings.store.url)
    if sqlite.get_backend_name() == "sqlite" and sqlite.database and sqlite.database != ":memory:":
        url = sqlite.set(database=path(sqlite.database)).render_as_string(hide_password=False)
    tls_files = ("certificate", "private_key", "ca_certificates")
    model, retraining, routing = settings.model, settings.retraining, settings.routing
    rules = [rule.model_copy(update={"send_to": files(rule.send_to, *tls_files)}) for rule in routing.rules]
    return settings.model_copy(
        update={
            "dicom": settings.dicom.model_copy(update={"tls": files(settings.dicom.tls, *tls_files)}),
            "web": settings.web.model_copy(update={"tls": files(settings.web.tls, "certificate", "private_key")}),
            "routing": routing.model_copy(update={"rules": rules}),
            "storage": settings.storage.model_copy(update={"folder": path(settings.storage.folder)}),
            "store": settings.store.model_copy(update={"url": url}),
            "model": model.model_copy(update={"path": model_path(model.path), "adapter": path(model.adapter)}),
            "retraining": retraining.model_copy(update={
                "recipe": recipe(retraining.recipe),
                "models_folder": path(retraining.models_folder),
                "data": path(retraining.data),
            }),
            "logging": settings.logging.model_copy(update={"file": path(settings.logging.file)}),
        }
    )
