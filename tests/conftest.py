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
