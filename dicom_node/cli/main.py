"""`slmnode`: one subcommand per thing a person wants to do with the node."""

from __future__ import annotations

import logging

import click

from dicom_node.cli.configuration import config
from dicom_node.cli.dicom import echo, send, serve
from dicom_node.cli.mappings import correct, export, import_, mappings, show
from dicom_node.cli.models import models, reharmonize
from dicom_node.cli.orthanc import orthanc_plugin
from dicom_node.cli.predict import predict
from dicom_node.cli.reports import reports
from dicom_node.cli.routes import routes
from dicom_node.cli.users import users
from dicom_node.cli.web import web
from dicom_node.config import CONFIG_ENV, ConfigError, load_settings


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    envvar=CONFIG_ENV,
    help=f"YAML configuration file (default: built-in defaults; env {CONFIG_ENV}).",
)
@click.pass_context
def cli(ctx: click.Context, config_path: str | None) -> None:
    """A DICOM node that harmonizes MRI series descriptions with a small language model."""
    try:
        settings = load_settings(config_path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    handlers = [logging.StreamHandler()]
    if settings.logging.file:
        handlers.append(logging.FileHandler(settings.logging.file, encoding="utf-8"))
    logging.basicConfig(
        level=settings.logging.level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=handlers,
    )
    ctx.obj = settings


for command in (
    serve, echo, send, mappings, show, correct, export, import_, reharmonize, predict, reports, models, routes,
    orthanc_plugin, users, web, config,
):
    cli.add_command(command)


def main() -> None:
    cli(prog_name="slmnode")

