import pytest
from click.testing import CliRunner

from dicom_node.cli.main import cli
from dicom_node.config import ConfigError, Settings, load_settings, relative_to
from tests.support.paths import ROOT

DEFAULT_YAML = ROOT / "config" / "default.yaml"


def test_default_yaml_documents_the_built_in_defaults():
    assert load_settings(DEFAULT_YAML) == relative_to(Settings(), DEFAULT_YAML.parent)


def test_every_default_key_is_commented():
    for line in DEFAULT_YAML.read_text().splitlines():
        if ":" in line and not line.lstrip().startswith("#") and not line.rstrip().endswith(":"):
            assert "#" in line, f"undocumented key: {line.strip()}"


def test_no_path_means_defaults(monkeypatch):
    monkeypatch.delenv("SLMNODE_CONFIG", raising=False)
    assert load_settings(None) == Settings()


def test_environment_variable_names_the_file(tmp_path, monkeypatch):
    path = tmp_path / "node.yaml"
    path.write_text("dicom:\n  port: 4242\n")
    monkeypatch.setenv("SLMNODE_CONFIG", str(path))
    assert load_settings().dicom.port == 4242


@pytest.mark.parametrize(
    "text, words",
    [
        ("dicom:\n  port: '104'\n", ["dicom.port", "integer"]),
        ("dicom:\n  prot: 104\n", ["dicom.prot: unknown key (did you mean dicom.port?)"]),
        ("stroage: {}\n", ["stroage: unknown key (did you mean storage?)"]),
        ("reports:\n  scope:\n    modalites: [CR]\n", ["did you mean reports.scope.modalities?"]),
        ("storage:\n  mode: everything\n", ["storage.mode"]),
        ("- a list\n", ["mapping"]),
        ("dicom: [\n", ["YAML"]),
        ("retraining: {schedule: nope}\n", ["retraining.schedule: 'nope' is not a cron expression"]),
        ("routing: {rules: [{name: s, send_to: {ae_title: X, host: h, port: 104}}]}\n",
         ["bad.yaml: routing rules forward the instances as received, so they need storage.mode: files"]),
    ],
)
def test_bad_files_name_the_file_and_the_key(tmp_path, text, words):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    message = str(info.value)
    assert str(path) in message and "Value error" not in message
    for word in words:
        assert word in message


def test_missing_file_is_a_clear_cli_error(tmp_path):
    result = CliRunner().invoke(cli, ["--config", str(tmp_path / "nope.yaml"), "--help"])
    # --help short-circuits before the group callback; a real subcommand must report the missing file.
    assert result.exit_code == 0
    result = CliRunner().invoke(cli, ["--config", str(tmp_path / "nope.yaml"), "mappings"])
    assert result.exit_code != 0
    assert "configuration file not found" in result.output


def test_relative_paths_are_relative_to_the_configuration_file(tmp_path, monkeypatch):
    site = tmp_path / "site"
    (site / "models" / "v1").mkdir(parents=True)
    (site / "node.yaml").write_text(
        "store: {url: 'sqlite:///db/slmnode.sqlite'}\nstorage: {folder: received}\nlogging: {file: logs/node.log}\n"
        "model: {path: models/v1, adapter: lora}\n"
        "retraining: {recipe: recipes/mine.yaml, models_folder: models, data: ../data}\n"
        "dicom: {tls: {certificate: tls/node.pem}}\n"
    )
    monkeypatch.chdir(tmp_path)  # somewhere else
    settings = load_settings("site/node.yaml")
    assert settings.store.url == f"sqlite:///{site}/db/slmnode.sqlite"
    assert (settings.storage.folder, settings.logging.file) == (f"{site}/received", f"{site}/logs/node.log")
    assert (settings.model.path, settings.model.adapter) == (f"{site}/models/v1", f"{site}/lora")
    retraining = settings.retraining
    assert (retraining.recipe, retraining.models_folder) == (f"{site}/recipes/mine.yaml", f"{site}/models")
    assert retraining.data == f"{site}/../data" and settings.dicom.tls.certificate == f"{site}/tls/node.pem"


def test_the_web_and_routing_tls_files_are_relative_to_the_configuration_file(tmp_path, monkeypatch):
    (tmp_path / "node.yaml").write_text(
        "storage: {mode: files}\nweb: {tls: {certificate: tls/web.pem, private_key: tls/web.key}}\n"
        "routing: {rules: [{name: r, send_to: {ae_title: WS, host: ws, port: 104, tls: true,\n"
        "  ca_certificates: tls/ca.pem, certificate: tls/me.pem, private_key: /etc/me.key}}]}\n"
    )
    monkeypatch.chdir(tmp_path.parent)  # somewhere else
    settings = load_settings(tmp_path / "node.yaml")
    assert (settings.web.tls.certificate, settings.web.tls.private_key) == (f"{tmp_path}/tls/web.pem",
                                                                          f"{tmp_path}/tls/web.key")
    send_to = settings.routing.rules[0].send_to
    assert (send_to.ca_certificates, send_to.certificate, send_to.private_key) == (
        f"{tmp_path}/tls/ca.pem", f"{tmp_path}/tls/me.pem", "/etc/me.key")


def test_names_that_are_not_paths_stay_as_they_are(tmp_path):
    (tmp_path / "node.yaml").write_text(
        "store: {url: 'postgresql://node:secret@db/slmnode'}\nmodel: {path: facebook/opt-350m}\n"
        "retraining: {recipe: retrain_embedded}\n"
    )
    settings = load_settings(tmp_path / "node.yaml")
    assert settings.store.url == "postgresql://node:secret@db/slmnode"
    assert (settings.model.path, settings.retraining.recipe) == ("facebook/opt-350m", "retrain_embedded")
    assert load_settings(DEFAULT_YAML).model.path == "embedded"


def test_a_command_run_from_another_folder_finds_the_same_store(tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    (site / "node.yaml").write_text("store: {url: 'sqlite:///slmnode.sqlite'}\n")
    slmnode = lambda *args: CliRunner().invoke(cli, ["--config", str(site / "node.yaml"), *args])
    from tests.support.helpers_dicom import record
    from dicom_node.store.database import Store

    store = Store(f"sqlite:///{site / 'slmnode.sqlite'}")
    store.record_instance(record(description="AX T2 FLAIR"))
    store.close()
    for folder in (site, tmp_path, tmp_path.parent):
        monkeypatch.chdir(folder)
        assert "AX T2 FLAIR" in slmnode("mappings").output
    assert sorted(p.name for p in tmp_path.rglob("*.sqlite")) == ["slmnode.sqlite"]


def test_the_startup_line_names_the_store_where_it_is(tmp_path, monkeypatch):
    from dicom_node.node import Node
    from tests.support.helpers_dicom import KeywordHarmonizer

    monkeypatch.chdir(tmp_path)
    settings = Settings.model_validate({"dicom": {"bind_address": "127.0.0.1", "port": 0},
                                        "reports": {"interval_seconds": 0}})  # the built-in store.url, relative
    with Node(settings, KeywordHarmonizer()) as node:
        assert f"store sqlite:///{tmp_path}/slmnode.sqlite," in node.describe()


def test_config_show_without_a_file_shows_the_paths_in_the_current_folder(tmp_path, monkeypatch):
    import yaml

    monkeypatch.delenv("SLMNODE_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    effective = yaml.safe_load(CliRunner().invoke(cli, ["config", "show"]).output)
    assert effective["store"]["url"] == f"sqlite:///{tmp_path}/slmnode.sqlite"
    assert (effective["storage"]["folder"], effective["model"]["path"]) == (f"{tmp_path}/received", "embedded")


def test_config_show_hides_the_passwords(tmp_path):
    (tmp_path / "node.yaml").write_text("store: {url: 'postgresql+psycopg://node:s3cret@db/slmnode'}\n"
                                        "orthanc: {url: 'http://127.0.0.1:8042', username: slm, password: s3cret}\n")
    shown = CliRunner().invoke(cli, ["--config", str(tmp_path / "node.yaml"), "config", "show"])
    assert shown.exit_code == 0 and "s3cret" not in shown.output
    assert "postgresql+psycopg://node:***@db/slmnode" in shown.output and "password: '***'" in shown.output


def test_config_show_prints_the_effective_settings_and_check_names_the_nearest_key(tmp_path):
    import yaml

    (tmp_path / "node.yaml").write_text("dicom: {port: 4242}\nstore: {url: 'sqlite:///s.sqlite'}\n")
    shown = CliRunner().invoke(cli, ["--config", str(tmp_path / "node.yaml"), "config", "show"])
    assert shown.exit_code == 0
    effective = yaml.safe_load(shown.output)
    assert effective["dicom"]["port"] == 4242 and effective["store"]["url"] == f"sqlite:///{tmp_path}/s.sqlite"
    assert effective["harmonizer"]["modalities"] == ["MR"]  # the defaults too

    assert CliRunner().invoke(cli, ["config", "check", str(tmp_path / "node.yaml")]).exit_code == 0
    (tmp_path / "bad.yaml").write_text("dicom:\n  ae_titel: X\n")
    checked = CliRunner().invoke(cli, ["config", "check", str(tmp_path / "bad.yaml")])
    assert checked.exit_code == 1
    assert f"{tmp_path / 'bad.yaml'}: dicom.ae_titel: unknown key (did you mean dicom.ae_title?)" in checked.output
