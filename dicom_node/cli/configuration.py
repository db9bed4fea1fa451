"""`slmnode config show|check`: what a command runs with, and a configuration file checked before use."""

from __future__ import annotations

import click


@click.group("config")
def config() -> None:
    """The configuration: the effective settings, or a file checked."""


@config.command()
@click.pass_context
def show(ctx: click.Context) -> None:
    """Print the effective configuration as YAML: the file's settings, the defaults for the rest, paths made
    absolute (relative ones are relative to the file's folder, or without a file to the current folder);
    the store's and Orthanc's passwords hidden."""
    from pathlib import Path

    import yaml
    from sqlalchemy.engine import make_url

    from dicom_node.config import relative_to

    settings = ctx.obj
    if not ctx.find_root().params.get("config_path"):  # a file's paths are already absolute
        settings = relative_to(settings, Path.cwd())
    effective = settings.model_dump(mode="json")
    effective["store"]["url"] = make_url(settings.store.url).render_as_string(hide_password=True)
    if settings.orthanc.password is not None:
        effective["orthanc"]["password"] = "***"
    click.echo(yaml.safe_dump(effective, sort_keys=False), nl=False)


@config.command()
@click.argument("file", type=click.Path(dir_okay=False))
def check(file) -> None:
    """Check FILE: every key known (a misspelt one is named with the nearest valid key), every value of its type."""
    from dicom_node.config import ConfigError, load_settings

    try:
        load_settings(file)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{file}: valid")
