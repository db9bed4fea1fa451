"""slmnode as a hospital installs it: a wheel built from the repository (not an editable install), in a
fresh virtual environment, run from an empty folder with nothing of the repository or ../shared around:
serve, receive a study, correct a mapping, retrain from the correction (harmonization only, the
default recipe shipped in the package), and the running node switches to the promoted version."""

import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest
import yaml

from tests.support.dicom_factory import ct_instance, mr_instance, write_files
from tests.support.helpers_dicom import free_port
from tests.support.paths import ROOT

CORRECTED = "MY_PROTO_77 weird seq"  # a site's own name, unlike anything the shipped model learned


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """bin/ of a new venv with the wheel installed; its dependencies are this interpreter's (torch is not
    downloaded again), reached by a .pth line, so the venv holds slmnode only as the wheel installed it."""
    work = tmp_path_factory.mktemp("install")
    source = work / "source"  # the project's files as a clone has them, without builds, venvs or runs
    for name in run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT).splitlines():
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", work / "dist", source])
    [wheel] = (work / "dist").glob("slmnode-*.whl")
    run([sys.executable, "-m", "venv", work / "venv"])
    bin_folder = work / "venv" / "bin"
    site = Path(run([bin_folder / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).strip())
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run([bin_folder / "python", "-m", "pip", "install", "-q", "--no-deps", "--no-index", wheel])
    shutil.rmtree(source)  # nothing of the repository is left to import from
    return bin_folder


def run(args, **kwargs) -> str:
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=600, **kwargs)
    assert done.returncode == 0, f"{args}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def environment() -> dict:
    """No PYTHONPATH, no data sets: only what a fresh machine has."""
    keep = ("PATH", "HOME", "LANG", "TMPDIR")
    return {**{k: os.environ[k] for k in keep if k in os.environ}, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


@pytest.mark.slow  # builds a wheel, loads the shipped model, retrains it
def test_the_installed_package_serves_receives_and_retrains_from_an_empty_folder(installed, tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    port = free_port()
    (site / "node.yaml").write_text(yaml.safe_dump({
        "dicom": {"bind_address": "127.0.0.1", "port": port},
        "harmonizer": {"poll_seconds": 0.2},
        "reports": {"interval_seconds": 0},
        "retraining": {"follow_seconds": 0.5},
    }))
    env = {**environment(), "SLMNODE_CONFIG": str(site / "node.yaml")}
    slmnode = lambda *args: run([installed / "slmnode", *args], cwd=site, env=env)
    where = run([installed / "python", "-c", "import dicom_node, training; print(dicom_node.__file__, training.__file__)"],
                cwd=site, env=env)
    assert str(installed.parent) in where and str(ROOT) not in where  # the wheel's copy, not the repository

    log = open(tmp_path / "serve.log", "w+")
    node = subprocess.Popen([installed / "slmnode", "serve"], cwd=site, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: "slmnode ready" in read(log) or node.poll() is not None, 120, log)
        assert node.poll() is None, read(log)
        assert f"store sqlite:///{site}/slmnode.sqlite," in read(log)  # the absolute location

        study = "1.2.826.0.1.3680043.8.498.99"
        datasets = [mr_instance(d, study_uid=study) for d in ("t1_mprage_sag", "AX T2 FLAIR", CORRECTED)]
        write_files([*datasets, ct_instance(study_uid=study)], tmp_path / "study")
        slmnode("send", "127.0.0.1", str(port), tmp_path / "study")
        mapped = lambda: {m["description"]: m["label"] for m in json.loads(slmnode("mappings", "--format", "json"))}
        wait_for(lambda: None not in [mapped().get(d.SeriesDescription) for d in datasets], 60, log)
        shown = {row["modality"]: row["source"] for row in json.loads(slmnode("show", "--study", study, "--format", "json"))}
        assert shown == {"MR": "model", "CT": "not harmonized"}

        before = mapped()[CORRECTED]
        correction = next(label for label in ("SWI", "ADC") if label != before)
        slmnode("correct", CORRECTED, correction, "--who", "test")
        started = time.monotonic()
        retrained = subprocess.run([installed / "slmnode", "models", "retrain"], cwd=site, env=env,
                                   capture_output=True, text=True, timeout=600)
        print(retrained.stdout, retrained.stderr, f"{time.monotonic() - started:.0f} s", sep="\n")
        assert retrained.returncode == 0, retrained.stdout + retrained.stderr
        assert "corrections_accuracy    0.000" in retrained.stdout and "gate passed" in retrained.stdout
        assert "it/s" not in retrained.stderr and "Loading weights" not in retrained.stderr  # no progress bars
        [candidate] = [line.split()[1] for line in retrained.stdout.splitlines() if line.startswith("candidate:")]
        active = [v for v in json.loads(slmnode("models", "list", "--format", "json")) if v["active"]]
        assert [v["version"] for v in active] == [candidate]
        assert Path(active[0]["path"]).parent == site / "models"  # relative to the configuration, in the site
        wait_for(lambda: f"switched to model {candidate}" in read(log), 60, log)
        assert not (site / "checkpoint").exists() and sorted(p.name for p in site.iterdir()) == [
            "models", "node.yaml", "slmnode.sqlite", "slmnode.sqlite-shm", "slmnode.sqlite-wal"]
    finally:
        node.send_signal(signal.SIGTERM)
        node.wait(timeout=60)
        log.close()
    assert node.returncode == 0


def read(log) -> str:
    log.flush()
    return Path(log.name).read_text()


def wait_for(condition, seconds: float, log) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, read(log)
        time.sleep(0.2)
