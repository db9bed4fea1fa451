"""`slmnode`: one subcommand per thing a person wants to do with the node."""

from __future__ import annotations

import logging
import sys

import click

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


def main() -> None:
    cli(prog_name="slmnode")


if __name__ == "__main__":
    sys.exit(main())
