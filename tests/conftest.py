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
from tests.support.paths import DATA_AVAILABLE  # noqa: E402
from training.data import DATA_ROOT, DATA_HELP  # noqa: E402


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
    """Tests that cannot run here skip, saying why: needs_data where the data sets are not (a clone without
    ../shared); sqlite_only, tests of SQLite's own behaviour, on a PostgreSQL server (SLMNODE_TEST_DB_URL)."""
    skips = {}
    if not DATA_AVAILABLE:
        skips["needs_data"] = pytest.mark.skip(reason=f"needs the data sets, not in {DATA_ROOT.resolve()}: {DATA_HELP}")
    if databases.SERVER is not None:
        skips["sqlite_only"] = pytest.mark.skip(reason="SQLite-specific; SLMNODE_TEST_DB_URL runs the suite on PostgreSQL")
    for item in items:
        for marker, skip in skips.items():
            if item.get_closest_marker(marker):
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


@pytest.fixture(scope="session")
def web_store_template(tmp_path_factory):
    """A seeded store (tests/support/web.py) and an API token of each user, made once: argon2 hashing
    takes a good part of a second per password, by design."""
    from tests.support.web import seed, web_settings

    folder = tmp_path_factory.mktemp("web-template")
    store = Store(web_settings(folder).store.url)
    tokens = seed(store)
    store.close()  # checkpoints the WAL into the file
    return folder / "web.sqlite", tokens


@pytest.fixture
def web(tmp_path, web_store_template):
    """The web app on a copy of the seeded store, with FastAPI's TestClient: `.client`, `.store`, `.settings`,
    `.app`, and `.headers(name)`, the Authorization header of that user's API token."""
    import shutil
    from types import SimpleNamespace

    from fastapi.testclient import TestClient

    from dicom_node.web.app import make_app
    from tests.support.web import web_settings

    template, tokens = web_store_template
    shutil.copy(template, tmp_path / template.name)
    settings = web_settings(tmp_path)
    store = Store(settings.store.url)
    app = make_app(settings, store)
    yield SimpleNamespace(
        client=TestClient(app), store=store, settings=settings, app=app,
        headers=lambda name: {"Authorization": f"Bearer {tokens[name]}"},
    )
    app.state.web.retraining.join(30)
    store.close()


@pytest.fixture
def pki(tmp_path):
    """A CA (its PEM path) and a server and a client key pair it signed, for 127.0.0.1."""
    from tests.support.pki import certificate

    ca_cert, ca_key, ca_path, _ = certificate(tmp_path, "test-ca", ca=True)
    _, _, server_cert, server_key = certificate(tmp_path, "node", issuer=(ca_cert, ca_key))
    _, _, client_cert, client_key = certificate(tmp_path, "scanner", issuer=(ca_cert, ca_key))
    return {"ca": ca_path, "server": (server_cert, server_key), "client": (client_cert, client_key)}
