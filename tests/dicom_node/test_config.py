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
    ],
)
def test_bad_files_name_the_file_and_the_key(tmp_path, text, words):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    message = str(info.value)
    assert str(path) in message
    for word in words:
        assert word in message


def test_missing_file_is_a_clear_cli_error(tmp_path):
    result = CliRunner().invoke(cli, ["--config", str(tmp_path / "nope.yaml"), "--help"])
    # --help short-circuits before the group callback; a real subcommand must report the missing file.
    assert result.exit_code == 0
    result = CliRunner().invoke(cli, ["--config", str(tmp_path / "nope.yaml"), "mappings"])
    assert result.exit_code != 0
    assert "configuration file not found" in result.output
