"""`slmnode models ...` and `slmnode reharmonize`: the registry of model versions and the retraining loop."""

from __future__ import annotations

import click


@click.group()
def models() -> None:
    """Model versions: retrain from corrections, list, promote, roll back."""


@click.command()
def reharmonize() -> None:
    """Queue descriptions mapped by another model version than the running one, to be mapped again."""
    raise click.ClickException("not built yet")
