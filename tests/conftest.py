"""Fixtures every test folder shares: the tiny models, built once per run, and a store in the test's own folder."""

import os

import pytest

# A stray hub id must fail at once, not retry for most of a minute.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from dicom_node.store.database import Store  # noqa: E402  (after the environment, which the hub reads at import)
from tests.support.paths import DATA_AVAILABLE  # noqa: E402
from training.data import DATA_ROOT, DATA_HELP  # noqa: E402


def pytest_collection_modifyitems(config, items):
    """Tests marked needs_data skip, saying why, where the data sets are not (a clone without ../shared)."""
    if DATA_AVAILABLE:
        return
    skip = pytest.mark.skip(reason=f"needs the data sets, not in {DATA_ROOT.resolve()}: {DATA_HELP}")
    for item in items:
        if item.get_closest_marker("needs_data"):
            item.add_marker(skip)


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


@pytest.fixture
def url(tmp_path):
    """The URL of a SQLite store file in tmp_path, for tests that open (and reopen) the store themselves."""
    return f"sqlite:///{tmp_path / 'store.sqlite'}"


@pytest.fixture
def store(url):
    """A real SQLite store in tmp_path, new for each test because tests write to it."""
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
