"""The script Orthanc's Python plugin runs ("PythonScript"): slmnode in Orthanc's own process.

`slmnode orthanc-plugin` prints the Orthanc configuration that loads it, with a "SlmNode" section
saying where slmnode is installed (its folder and site-packages), for which Python, and which slmnode
configuration to read. Orthanc embeds its own Python (Debian's orthanc-python: libpython3.11), so
slmnode must be installed for the same minor version; otherwise this says so in Orthanc's log and
stops before importing anything. Only the standard library and Orthanc's module are imported until then.
"""

import json
import logging
import site
import sys

import orthanc


def _slmnode_section() -> dict:
    section = json.loads(orthanc.GetConfiguration()).get("SlmNode")
    if not section:
        raise RuntimeError("no \"SlmNode\" section in Orthanc's configuration: add what `slmnode orthanc-plugin` prints")
    here, wanted = "%d.%d" % sys.version_info[:2], section.get("PythonVersion")
    if wanted != here:
        raise RuntimeError(
            f"Orthanc's Python plugin runs Python {here}, but slmnode was installed for Python {wanted} "
            f"({', '.join(section.get('SysPath', []))}): install slmnode in a Python {here} virtual environment "
            "and use the configuration its `slmnode orthanc-plugin` prints"
        )
    root, *site_packages = section["SysPath"]
    sys.path.insert(0, root)  # the slmnode that printed the configuration, before any other installed one
    for folder in site_packages:
        site.addsitedir(folder)
    return section


def _start():
    try:
        section = _slmnode_section()
        from dicom_node.config import load_settings
        from dicom_node.orthanc.embedded import EmbeddedNode

        settings = load_settings(section.get("Config"))
        logging.basicConfig(level=settings.logging.level, format="slmnode %(levelname)s %(name)s: %(message)s")
        node = EmbeddedNode(settings).start()
    except Exception as exc:
        orthanc.LogError(f"slmnode plugin not started: {exc}")
        raise

    def on_stored_instance(dicom, instance_id):
        try:
            node.record(dicom.GetInstanceData(), dicom.GetInstanceRemoteAet())
        except Exception as exc:  # Orthanc keeps the instance whatever happens here
            orthanc.LogError(f"slmnode could not record Orthanc instance {instance_id}: {type(exc).__name__}: {exc}")

    def on_change(change_type, _level, _resource):
        if change_type == orthanc.ChangeType.ORTHANC_STOPPED:
            node.stop()

    orthanc.RegisterOnStoredInstanceCallback(on_stored_instance)
    orthanc.RegisterOnChangeCallback(on_change)


_start()
