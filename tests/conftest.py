"""Fixtures every test folder shares: the tiny models, built once per run, and a store of the test's own
(SQLite in its folder, or a database on the server SLMNODE_TEST_DB_URL names)."""

import os

import pytest

# A stray hub id must fail at once, not retry for most of a minute.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from sqlalchemy.engine import make_url  # noqa: E402

from dicom_node.store.database import Store  # noqa: E402  (after the environment, which the hub reads at import)
from tests.support import databases  # noqa: E402
from tests.support.databases import store_url  # noqa: E402


@pytest.fixture(scope="session")
def tiny_model_folder(tmp_path_factory):
    """The untrained tiny model (seed 0), named `model` so its versions read model-<hash>; tests only read it."""
    from tests.support.tiny_model import save_tiny_model  # torch loads only for the tests that need a model

    return save_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="session")
def tiny_model_folders(tiny_model_folder, tmp_path_factory):
    """Two tiny models that answer differently (seeds 0 and 1): a version and the one promoted over it."""
    from tests.support.tiny_model import save_tiny_model

    return tiny_model_folder, save_tiny_model(tmp_path_factory.mktemp("tiny") / "model-seed1", seed=1)


def pytest_collection_modifyitems(config, items):
    """On a PostgreSQL server (SLMNODE_TEST_DB_URL) the tests of SQLite's own behaviour do not apply."""
    if databases.SERVER is None:
        return
    skip = pytest.mark.skip(reason="SQLite-specific; SLMNODE_TEST_DB_URL runs the suite on PostgreSQL")
    for item in items:
        if item.get_closest_marker("sqlite_only"):
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def _drop_databases_at_the_end():
    yield
    databases.drop_databases()


@pytest.fixture(autouse=True)
def _fresh_databases(request):
    """A test's databases on the server are its own: those of its tmp_path are dropped when it ends (as SQLite
    files go with tmp_path); a module's fixture's, at the end of the run."""
    folder = request.getfixturevalue("tmp_path") if databases.SERVER and "tmp_path" in request.fixturenames else None
    yield
    if folder is not None:
        databases.drop_databases(under=folder)


@pytest.fixture
def postgres_server():
    """The PostgreSQL server SLMNODE_TEST_DB_URL names, for tests that need one; skipped without it."""
    if databases.SERVER is None or make_url(databases.SERVER).get_backend_name() != "postgresql":
        pytest.skip("needs a PostgreSQL server: set SLMNODE_TEST_DB_URL (see .ci/run)")
    return databases.SERVER


@pytest.fixture
def url(tmp_path):
    """The URL of a store of this test's own (tests/support/databases.py), for tests that open (and
    reopen) it themselves."""
    return store_url(tmp_path)


@pytest.fixture
def store(url):
    """A real store (SQLite, or PostgreSQL with SLMNODE_TEST_DB_URL), new for each test because tests write to it."""
    store = Store(url)
    yield store
    store.close()
