"""`slmnode users ...`: who may log in to the web pages and the API, and with which role."""

from __future__ import annotations

import click

from dicom_node.cli.options import FORMAT_OPTION, open_store
from dicom_node.store.users import ROLES

PASSWORD_OPTION = click.option(
    "--password",
    prompt=True,
    hide_input=True,
    confirmation_prompt=True,
    help="The password (asked for, unseen, when not given; a given one stays in the shell's history).",
)


@click.group()
def users() -> None:
    """People who may use the web pages and the API.

    Roles: viewer (reads everything), reviewer (also corrects and confirms mappings), admin (also
    promotes, rolls back and retrains models). Passwords are stored as argon2 hashes.
    """


def _run(action, *args) -> None:
    from dicom_node.store.users import UserError

    try:
        action(*args)
    except UserError as exc:
        raise click.ClickException(str(exc)) from None


@users.command()
@click.argument("name")
@click.option("--role", type=click.Choice(ROLES), default="viewer", show_default=True)
@PASSWORD_OPTION
@click.pass_obj
def add(settings, name, role, password) -> None:
    """Add user NAME with a role and a password."""
    from dicom_node.store.users import add_user

    _run(add_user, open_store(settings), name, role, password)
    click.echo(f"user {name!r} added as {role}")


@users.command("list")
@FORMAT_OPTION
@click.pass_obj
def list_(settings, fmt) -> None:
    """List users and their roles."""
    from dicom_node.cli.output import format_rows
    from dicom_node.store.times import iso
    from dicom_node.store.users import users as all_users

    rows = [{"name": u.name, "role": u.role, "created_at": iso(u.created_at)} for u in all_users(open_store(settings).engine)]
    click.echo(format_rows(rows, ("name", "role", "created_at"), fmt), nl=False)


@users.command()
@click.argument("name")
@click.pass_obj
def remove(settings, name) -> None:
    """Remove user NAME; their logins end at once. Their corrections keep their name."""
    from dicom_node.store.users import remove_user

    _run(remove_user, open_store(settings), name)
    click.echo(f"user {name!r} removed")


@users.command()
@click.argument("name")
@PASSWORD_OPTION
@click.pass_obj
def passwd(settings, name, password) -> None:
    """Set a new password for user NAME; their logins end."""
    from dicom_node.store.users import set_password

    _run(set_password, open_store(settings), name, password)
    click.echo(f"password of {name!r} changed")
