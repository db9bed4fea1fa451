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
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

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
    claim_seconds: float = Field(120.0, gt=0, strict=False)
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


class LoggingSettings(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    file: str | None = None


class Settings(_Section):
    dicom: DicomSettings = DicomSettings()
    storage: StorageSettings = StorageSettings()
    store: StoreSettings = StoreSettings()
    model: ModelSettings = ModelSettings()
    harmonizer: HarmonizerSettings = HarmonizerSettings()
    reports: ReportSettings = ReportSettings()
    retraining: RetrainingSettings = RetrainingSettings()
    logging: LoggingSettings = LoggingSettings()


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
