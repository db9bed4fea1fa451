"""`slmnode users add|list|remove|passwd` on a real store: hashes, never passwords; clear errors."""

from __future__ import annotations

import json

from click.testing import CliRunner
from sqlalchemy import select

from dicom_node.cli.main import cli
from dicom_node.store.database import Store
from dicom_node.store.tables import User
from dicom_node.store.users import authenticate


def run(url_config, *args, input=None):
    return CliRunner().invoke(cli, ["--config", str(url_config), "users", *args], input=input)


def config(tmp_path, url):
    path = tmp_path / "node.yaml"
    path.write_text(f"store:\n  url: {url}\n")
    return path


def test_add_list_passwd_remove(tmp_path, url):
    conf = config(tmp_path, url)
    added = run(conf, "add", "rita", "--role", "reviewer", input="first-secret\nfirst-secret\n")
    assert added.exit_code == 0, added.output
    assert "user 'rita' added as reviewer" in added.output
    listed = json.loads(run(conf, "list", "--format", "json").output)
    assert [(row["name"], row["role"]) for row in listed] == [("rita", "reviewer")]
    store = Store(url)
    with store.engine.connect() as conn:
        stored = conn.scalar(select(User.password_hash))
    assert stored.startswith("$argon2id$") and "first-secret" not in stored
    assert authenticate(store, "rita", "first-secret")
    assert run(conf, "passwd", "rita", "--password", "second-secret").exit_code == 0
    assert not authenticate(store, "rita", "first-secret") and authenticate(store, "rita", "second-secret")
    assert run(conf, "remove", "rita").exit_code == 0
    assert not authenticate(store, "rita", "second-secret")
    assert json.loads(run(conf, "list", "--format", "json").output) == []
    store.close()


def test_errors_are_clear(tmp_path, url):
    conf = config(tmp_path, url)
    assert run(conf, "add", "ann", "--password", "long-enough").exit_code == 0
    twice = run(conf, "add", "ann", "--password", "long-enough")
    assert twice.exit_code == 1 and "user 'ann' already exists" in twice.output
    short = run(conf, "add", "bob", "--password", "short")
    assert short.exit_code == 1 and "at least 8 characters" in short.output
    role = run(conf, "add", "bob", "--role", "boss", "--password", "long-enough")
    assert role.exit_code == 2 and "viewer" in role.output
    missing = run(conf, "remove", "nobody")
    assert missing.exit_code == 1 and "no user 'nobody'" in missing.output
