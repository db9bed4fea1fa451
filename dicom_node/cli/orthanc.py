"""`slmnode orthanc-plugin`: the Orthanc configuration that runs slmnode inside Orthanc (plugin mode)."""

from __future__ import annotations

import json
import site
import sys
from pathlib import Path

import click

PLUGIN_LIBRARIES = (  # where Debian's orthanc-python puts the plugin
    "/usr/share/orthanc/plugins/libOrthancPython.so",
    "/usr/lib/orthanc/libOrthancPython.so.4.0",
)


@click.command("orthanc-plugin")
@click.option("--library", type=click.Path(dir_okay=False), help="Orthanc's Python plugin (default: Debian's).")
@click.pass_context
def orthanc_plugin(ctx: click.Context, library: str | None) -> None:
    """Print the Orthanc configuration (JSON) that loads slmnode as a Python plugin.

    Merge it into Orthanc's configuration. Orthanc then records each stored instance in slmnode's store
    (the slmnode configuration given with --config) and runs the harmonization worker, the report job
    and the label writer on background threads. Orthanc's Python must be this Python's minor version.
    """
    import dicom_node

    if library is None:
        library = next((path for path in PLUGIN_LIBRARIES if Path(path).is_file()), PLUGIN_LIBRARIES[0])
    config = ctx.parent.params.get("config_path") if ctx.parent else None
    package = Path(dicom_node.__file__).resolve().parent
    configuration = {
        "Plugins": [library],
        "PythonScript": str(package / "orthanc" / "plugin.py"),
        "PythonVerbose": False,
        "SlmNode": {
            "Config": str(Path(config).resolve()) if config else None,
            "PythonVersion": "%d.%d" % sys.version_info[:2],
            "SysPath": [str(package.parent), *site.getsitepackages()],
        },
    }
    click.echo(json.dumps(configuration, indent=2))
