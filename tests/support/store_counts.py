"""Rows in a store, counted for the tests and the ingest benchmark; the node itself never needs them."""

from __future__ import annotations

from sqlalchemy import func, select

from dicom_node.store.database import Store
from dicom_node.store.tables import Description, Instance, Series, Study


def _count(store: Store, model) -> int:
    with store.engine.connect() as conn:
        return conn.scalar(select(func.count()).select_from(model))


def count_instances(store: Store) -> int:
    return _count(store, Instance)


def count_series(store: Store) -> int:
    return _count(store, Series)


def count_studies(store: Store) -> int:
    return _count(store, Study)


def count_queued(store: Store) -> int:
    with store.engine.connect() as conn:
        return conn.scalar(select(func.count()).where(Description.status == "queued"))
