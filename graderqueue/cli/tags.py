"""``tag add|list|remove`` and ``type add|list|update|remove``: what jobs need and what
server types offer."""

from __future__ import annotations

import click
from sqlalchemy import select

from graderqueue.cli import Context, echo_rows, pass_ctx
from graderqueue.cli.lifecycle_common import CLI, wake
from graderqueue.config import Settings
from graderqueue.quoting import quote
from graderqueue.registry import actions as registry
from graderqueue.registry import type_lifecycle
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


@tag.command("remove", short_help="Delete a tag; take it from every server type.")
@click.argument("name")
@click.option("--cancel-jobs", is_flag=True, help="Cancel the live jobs that carry it.")
@click.option("--keep-jobs", is_flag=True, help="Let them run where they were routed.")
@pass_ctx
def tag_remove(ctx: Context, name: str, cancel_jobs: bool, keep_jobs: bool) -> None:
    """Delete tag NAME and take it from every server type.

    Refused while a platform forces it or the default_tags setting names
    it. Refused while live jobs (queued, held, being graded) carry it,
    unless --cancel-jobs cancels them or --keep-jobs keeps them: a job is
    routed to server types when it is queued, and keeps them.
    """
    with ctx.transaction() as session:
        cancelled = type_lifecycle.remove_tag(
            session,
            name,
            default_tags=ctx.settings.default_tags,
            cancel_jobs=cancel_jobs,
            keep_jobs=keep_jobs,
            actor=CLI,
        )
    extra = f"; {cancelled} live job(s) cancelled" if cancelled else ""
    click.echo(f"Tag {quote(name)} removed{extra}.")


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


@type_group.command("list", short_help="Every server type, its tags, paused or not.")
@pass_ctx
def type_list(ctx: Context) -> None:
    """Every server type: id, name, tags, and whether its dispatch is paused."""
    with ctx.transaction() as session:
        rows = session.scalars(select(ServerType).order_by(ServerType.id))
        echo_rows(
            (
                f"{row.id}\t{row.name}\t{','.join(registry.type_tags(session, row.id)) or '-'}"
                + ("\tpaused" if row.paused else "")
                for row in rows
            ),
            "No server types.",
        )


def _tag_list(value: str | None) -> list[str]:
    return [t.strip() for t in (value or "").split(",") if t.strip()]


@type_group.command("update", short_help="Change a server type's tags.")
@click.argument("name")
@click.option("--tags", default=None, help='Its tags from now on, comma-separated ("" : none).')
@click.option("--add-tags", default=None, help="Comma-separated tags to add.")
@click.option("--remove-tags", default=None, help="Comma-separated tags to take away.")
@pass_ctx
def type_update(
    ctx: Context, name: str, tags: str | None, add_tags: str | None, remove_tags: str | None
) -> None:
    """Change the tags of server type NAME.

    New jobs are routed by the new tags. Jobs already queued keep the types
    they were routed to when they were queued.
    """
    if tags is None and add_tags is None and remove_tags is None:
        raise click.UsageError("Give --tags, --add-tags or --remove-tags.")
    with ctx.transaction() as session:
        now = type_lifecycle.update_type(
            session,
            name,
            tags=_tag_list(tags) if tags is not None else None,
            add=_tag_list(add_tags),
            remove=_tag_list(remove_tags),
            actor=CLI,
        )
    shown = ", ".join(quote(n) for n in now)
    click.echo(f"Server type {quote(name)} now has tags {shown}." if now
               else f"Server type {quote(name)} now has no tags.")  # fmt: skip
    if not now:
        click.echo(_untagged_type_note(ctx.settings, name))


@type_group.command("remove", short_help="Delete a server type.")
@click.argument("name")
@click.option("--cancel-jobs", is_flag=True, help="Cancel the jobs only it can run.")
@click.option("--move-jobs-to", default=None, metavar="TYPE", help="Route its jobs to TYPE.")
@pass_ctx
def type_remove(ctx: Context, name: str, cancel_jobs: bool, move_jobs_to: str | None) -> None:
    """Delete server type NAME.

    Refused while servers or server tokens have it (`server update --type`,
    `server remove`, `server-token revoke`), and while unfinished jobs
    (queued, held, being graded, in error) can run on no other type, unless
    --cancel-jobs cancels them or --move-jobs-to TYPE routes every job of
    this type to TYPE instead.
    """
    with ctx.transaction() as session:
        woken = type_lifecycle.remove_type(
            session, name, cancel_jobs=cancel_jobs, move_jobs_to=move_jobs_to, actor=CLI
        )
    moved = f"; its jobs now go to {quote(move_jobs_to)}" if move_jobs_to else ""
    click.echo(f"Server type {quote(name)} removed{moved}.")
    wake(ctx, woken)


def register(cli: click.Group) -> None:
    for group in (tag, type_group):
        cli.add_command(group)
