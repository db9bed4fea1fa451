"""The model registry: which model versions exist, how they scored, and which one the node runs.

A version is what slm.engine.Engine.version says of a model (name + hash of its weights), so a
version names exactly one set of weights. The active version is the one of the latest promotions
row; a rollback adds a row too, so the history says who switched what and when. Nothing promoted
yet means the node runs the model of its settings (model.path). Which model runs, and loading it, is
dicom_node.models.choose's job; this module only keeps the tables.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, insert, select
from sqlalchemy.engine import Connection

from dicom_node.store.database import Store, StoreError
from dicom_node.store.tables import ModelVersion, Promotion, utcnow


class RegistryError(StoreError):
    """The registry cannot do what was asked (an unknown version, nothing to roll back to)."""


@dataclass(frozen=True)
class RegisteredVersion:
    version: str
    path: str
    adapter: str | None
    metrics: dict
    note: str | None
    created_at: datetime
    active: bool = False
    promoted_at: datetime | None = None  # the latest promotion or rollback to this version


def register(
    store: Store,
    version: str,
    path: str,
    adapter: str | None = None,
    metrics: dict | None = None,
    note: str | None = None,
) -> bool:
    """Add a version; False (and nothing changed) when it is already registered."""
    with store.transaction() as conn:
        if _version_id(conn, version) is not None:
            return False
        conn.execute(
            insert(ModelVersion).values(
                version=version,
                path=path,
                adapter=adapter,
                metrics=json.dumps(metrics) if metrics is not None else None,
                note=note,
                created_at=utcnow(),
            )
        )
        return True


def versions(store: Store) -> list[RegisteredVersion]:
    """Every registered version, oldest first, the active one marked."""
    last_promoted = (
        select(Promotion.model_version_id, func.max(Promotion.created_at).label("at"))
        .group_by(Promotion.model_version_id)
        .subquery()
    )
    query = (
        select(
            ModelVersion.id,
            ModelVersion.version,
            ModelVersion.path,
            ModelVersion.adapter,
            ModelVersion.metrics,
            ModelVersion.note,
            ModelVersion.created_at,
            last_promoted.c.at,
        )
        .outerjoin(last_promoted, last_promoted.c.model_version_id == ModelVersion.id)
        .order_by(ModelVersion.created_at, ModelVersion.id)
    )
    with store.engine.connect() as conn:
        active_id = _active_id(conn)
        rows = conn.execute(query).all()
    return [
        RegisteredVersion(
            version=row.version,
            path=row.path,
            adapter=row.adapter,
            metrics=json.loads(row.metrics) if row.metrics else {},
            note=row.note,
            created_at=row.created_at,
            active=row.id == active_id,
            promoted_at=row.at,
        )
        for row in rows
    ]


def get(store: Store, version: str) -> RegisteredVersion:
    """A registered version by its name, or by a beginning of it that only one version has."""
    found = versions(store)
    matches = [v for v in found if v.version == version] or [v for v in found if v.version.startswith(version)]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise RegistryError(f"{version!r} begins {len(matches)} versions; give more of it")
    raise RegistryError(f"no model version {version!r} in the registry; see `slmnode models list`")


def active(store: Store) -> RegisteredVersion | None:
    """The version the node should run; None when nothing was ever promoted (the node runs model.path)."""
    return next((registered for registered in versions(store) if registered.active), None)


def promote(store: Store, version: str, who: str | None, note: str | None = None) -> bool:
    """Make `version` the active one; False when it already is."""
    with store.transaction() as conn:
        version_id = _version_id(conn, version)
        if version_id is None:
            raise RegistryError(f"no model version {version!r} in the registry; see `slmnode models list`")
        if _active_id(conn) == version_id:
            return False
        _record(conn, version_id, "promote", who, note)
        return True


def rollback(store: Store, who: str | None, note: str | None = None) -> str:
    """Undo the latest promotion still in force: the version active before it runs again. Returns that version.

    The history is replayed as a stack: a promotion pushes its version, a rollback pops one. So two
    rollbacks after promoting v1, v2, v3 lead back to v1, not to and fro between v2 and v3.
    """
    with store.transaction() as conn:
        stack = _promotion_stack(conn)
        if len(stack) < 2:
            raise RegistryError(
                "nothing to roll back to: no version was active before the current one"
                if stack
                else "nothing to roll back: no version was ever promoted"
            )
        previous = stack[-2]
        _record(conn, previous, "rollback", who, note)
        return conn.scalar(select(ModelVersion.version).where(ModelVersion.id == previous))


# ---- helpers -------------------------------------------------------------------------------------


def _version_id(conn: Connection, version: str) -> int | None:
    return conn.scalar(select(ModelVersion.id).where(ModelVersion.version == version))


def _active_id(conn: Connection) -> int | None:
    latest = select(Promotion.model_version_id).order_by(Promotion.created_at.desc(), Promotion.id.desc()).limit(1)
    return conn.scalar(latest)


def _promotion_stack(conn: Connection) -> list[int]:
    stack: list[int] = []
    history = select(Promotion.model_version_id, Promotion.action).order_by(Promotion.created_at, Promotion.id)
    for version_id, action in conn.execute(history):
        if action == "rollback" and stack:
            stack.pop()
        if not stack or stack[-1] != version_id:  # a rollback lands on the version below; keep the two in step
            stack.append(version_id)
    return stack


def _record(conn: Connection, version_id: int, action: str, who: str | None, note: str | None) -> None:
    conn.execute(
        insert(Promotion).values(model_version_id=version_id, action=action, who=who, note=note, created_at=utcnow())
    )

