"""Typed settings, read once from YAML and passed down.

Every key is documented in config/default.yaml. A wrong type, an unknown key or a missing file is a
ConfigError that names the file and the key, so a PACS administrator can fix the file without
reading a traceback.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from slm.tasks import SERIES_LABELS
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
    allowed_calling_aes: list[str] = []
    allowed_addresses: list[str] = []
    tls: TLSSettings = TLSSettings()
    network_timeout: float = Field(60.0, gt=0, strict=False)


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
    impression_max_tokens: int = Field(128, ge=1)


class HarmonizerSettings(_Section):
    kind: Literal["auto", "rules", "slm"] = "auto"
    batch_size: int = Field(64, ge=1)
    poll_seconds: float = Field(2.0, gt=0, strict=False)
    retry_seconds: float = Field(30.0, gt=0, strict=False)
    max_retry_seconds: float = Field(3600.0, gt=0, strict=False)


class ReportSettings(_Section):
    interval_seconds: float = Field(60.0, ge=0, strict=False)
    batch_size: int = Field(16, ge=1)
    queue_size: int = Field(64, ge=1)
    claim_seconds: float = Field(900.0, gt=0, strict=False)
    retry_seconds: float = Field(60.0, gt=0, strict=False)
    max_retry_seconds: float = Field(3600.0, gt=0, strict=False)
    threads: int = Field(1, ge=1)
    ingest_quiet_seconds: float = Field(5.0, ge=0, strict=False)


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
    recipe: str = "config/training/retrain_embedded.yaml"
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
    """Settings from `path`, else from $SLMNODE_CONFIG, else the built-in defaults."""
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
        return Settings.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"{path}: {problems}") from None
