"""``tag`` and ``type`` commands: what jobs need and what server types offer."""

from __future__ import annotations

import click
from sqlalchemy import select

from graderqueue.cli import Context, echo_rows, pass_ctx
from graderqueue.config import Settings
from graderqueue.quoting import quote
from graderqueue.registry import actions as registry
from graderqueue.store.models import ServerType, Tag


@click.group()
def tag() -> None:
    """Tags: what a job needs, what types offer.

    A job sent with tags goes only to servers whose type has every one of
    them.
    """


@tag.command("add")
@click.argument("name")
@pass_ctx
def tag_add(ctx: Context, name: str) -> None:
    """Create tag NAME (no commas).

    Platforms name it in a job's tags; give it to the server types that can
    run such jobs with `type add --tags`.
    """
    with ctx.transaction() as session:
        new = registry.add_tag(session, name)
        click.echo(f"Tag {quote(new.name)} added (id {new.id}).")


@tag.command("list")
@pass_ctx
def tag_list(ctx: Context) -> None:
    """Every tag: id and name."""
    with ctx.transaction() as session:
        rows = session.scalars(select(Tag).order_by(Tag.id))
        echo_rows((f"{row.id}\t{row.name}" for row in rows), "No tags.")


@click.group("type")
def type_group() -> None:
    """Server types: the tags their servers handle.

    Every grading server has one type; it gets the jobs whose tags are all
    among its type's tags.
    """


def _untagged_type_note(settings: Settings, name: str) -> str:
    """What a type without tags runs: the rule of routing.resolve, in words."""
    note = (
        f"Server type {quote(name)} has no tags: its servers get only jobs that end up "
        "with no tag at all, sent without tags by a platform that forces none"
    )
    if settings.default_tags:
        defaults = ",".join(settings.default_tags)
        return (
            f"{note}. Since default_tags is set ({defaults}), every job gets a tag: "
            "this type will never get a job. Add tags with --tags."
        )
    return f"{note} (the default_tags setting is empty). Other types can get those jobs too."


@type_group.command("add", short_help="Create a server type with its tags.")
@click.argument("name")
@click.option("--tags", default="", help="Comma-separated tag names.")
@pass_ctx
def type_add(ctx: Context, name: str, tags: str) -> None:
    """Create server type NAME handling the tags given by --tags.

    The tags must exist (`tag add`). Without --tags the type's servers only
    get jobs that carry no tag at all.
    """
    names = [t.strip() for t in tags.split(",") if t.strip()]
    with ctx.transaction() as session:
        new = registry.add_type(session, name, names)
        shown = ", ".join(quote(n) for n in names)
        click.echo(f"Server type {quote(new.name)} added (id {new.id}) with tags {shown}."
                   if names else f"Server type {quote(new.name)} added (id {new.id}).")  # fmt: skip
    if not names:
        click.echo(_untagged_type_note(ctx.settings, name))


@type_group.command("list")
@pass_ctx
def type_list(ctx: Context) -> None:
    """Every server type: id, name and tags."""
    with ctx.transaction() as session:
        rows = session.scalars(select(ServerType).order_by(ServerType.id))
        echo_rows(
            (
                f"{row.id}\t{row.name}\t{','.join(registry.type_tags(session, row.id)) or '-'}"
                for row in rows
            ),
            "No server types.",
        )


def register(cli: click.Group) -> None:
    for group in (tag, type_group):
        cli.add_command(group)
