"""``seo explain``: which bindings an event would fire, in order, and why not the others."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import click

from seo_core.catalog import SOURCE_TYPES, EventType, RuleKind, SourceName, parse_source
from seo_core.cli.app import State, cli, pass_state
from seo_core.cli.output import echo_json, echo_table
from seo_core.rules import EventFacts

_ADDRESS = re.compile(r'^(?:"(?:[^"\\]|\\.)*"|[^\s"@<>()\[\],;:\\]+)@[^\s"@<>()\[\],;:\\]+$')
"""``local@domain``: a dot-atom or quoted local part, a domain without spaces (IDN welcome)."""


def _address(value: str, *, null: bool) -> str:
    """One envelope address as a rule sees it; ``<...>`` is taken off, as SMTP writes it, and a
    source route (``@relay.example:user@example.com``) too, as the SMTP server takes it off."""
    text = value.strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1].strip()
    if text.startswith("@"):
        text = _without_route(text) or text
    if (null and text == "") or _ADDRESS.match(text):
        return text
    if not null and text.casefold() == "postmaster":
        return text  # RCPT TO:<Postmaster> needs no domain (RFC 5321)
    if null:
        raise click.BadParameter(
            f"{value!r} is not an address; give local@domain, or '' for the null sender <>"
        )
    raise click.BadParameter(f"{value!r} is not an address; give local@domain (or postmaster)")


def _without_route(path: str) -> str | None:
    """The mailbox of a source-routed path, or None when it cannot be read.

    The SMTP server reads a path like this one with aiosmtpd, which hands ``<...>`` to the
    standard library's ``get_angle_addr`` and keeps its ``addr_spec``: the mailbox, the route
    dropped (RFC 5321, 4.1.1.3: a route is to be ignored). The same function here gives the
    recipient the server would see, without importing aiosmtpd into the command line.
    """
    from email._header_value_parser import get_angle_addr
    from email.errors import HeaderParseError

    try:
        found, rest = get_angle_addr(f"<{path}>")
        mailbox = found.addr_spec
    except (HeaderParseError, IndexError):  # IndexError: older Pythons, on <""@x> (bpo-27931)
        return None
    return mailbox if not rest.strip() else None


def _mail_from(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    return None if value is None else _address(value, null=True)


def _rcpt_to(
    _ctx: click.Context, _param: click.Parameter, value: tuple[str, ...]
) -> tuple[str, ...]:
    return tuple(_address(item, null=False) for item in value)


_FACT_OPTIONS = {
    RuleKind.TRANSPORT: ("--mail-from", "--rcpt-to", "--ehlo"),
    RuleKind.PROTOCOL: ("--command", "--argument"),
    RuleKind.NNTP: ("--newsgroups",),
}
"""The options that give the facts each kind of rule reads; the others mean nothing to it."""


def _refuse_facts_it_ignores(name: SourceName, event: EventType, given: list[str]) -> None:
    """A fact the event's rules never read is a usage error, not silently left out: the
    administrator asked about an event that cannot have it, and would read the answer as if
    it had been taken into account."""
    applies = _FACT_OPTIONS.get(event.rule_kind, ())
    for option in given:
        if option in applies:
            continue
        kind = next(k for k, options in _FACT_OPTIONS.items() if option in options)
        events = "; ".join(
            f"{source.name} {', '.join(e.name for e in source.events if e.rule_kind is kind)}"
            for source in SOURCE_TYPES.values()
            if any(e.rule_kind is kind for e in source.events)
        )
        reads = (
            f"its rules read only {', '.join(applies)}"
            if applies
            else "its bindings take no rule, so no fact applies"
        )
        raise click.UsageError(
            f"{option} does not apply to {name.type} {event.name} ({reads}); it applies to {events}"
        )


@cli.command("explain")
@click.argument("source")
@click.argument("event")
@click.option(
    "--mail-from",
    metavar="ADDRESS",
    callback=_mail_from,
    help="The envelope sender, local@domain ('' for <>).",
)
@click.option(
    "--rcpt-to",
    metavar="ADDRESS",
    multiple=True,
    callback=_rcpt_to,
    help="An envelope recipient, local@domain; repeat for each.",
)
@click.option("--ehlo", metavar="HOST", help="The name the client gave in EHLO/HELO.")
@click.option("--command", "verb", metavar="VERB", help="Protocol events: the SMTP command.")
@click.option("--argument", metavar="TEXT", help="Protocol events: the command's argument.")
@click.option("--newsgroups", metavar="GROUPS", help="NNTP events: comma-separated groups.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@pass_state
def explain_command(
    state: State,
    source: str,
    event: str,
    mail_from: str | None,
    rcpt_to: tuple[str, ...],
    ehlo: str | None,
    verb: str | None,
    argument: str | None,
    newsgroups: str | None,
    as_json: bool,
) -> None:
    """Show which bindings of SOURCE's EVENT would fire, in order, and why the others would not.

    Each fact option applies to the events whose rules read it (--mail-from, --rcpt-to and
    --ehlo to transport events, --command and --argument to protocol events, --newsgroups to
    NNTP events); giving one to another event is a usage error.

    \b
    Example:
      seo explain smtp/1 OnArrival --mail-from a@example.com --rcpt-to b@example.net
    """
    from seo_core.dispatcher.explain import explain

    name = parse_source(source)
    event_type = name.source_type.event(event)
    event_name = event_type.name
    given = {
        "--mail-from": mail_from is not None,
        "--rcpt-to": bool(rcpt_to),
        "--ehlo": ehlo is not None,
        "--command": verb is not None,
        "--argument": argument is not None,
        "--newsgroups": newsgroups is not None,
    }
    _refuse_facts_it_ignores(name, event_type, [option for option, on in given.items() if on])
    facts = EventFacts(
        ehlo=ehlo,
        mail_from=mail_from,
        rcpt_to=tuple(rcpt_to),
        command=verb,
        argument=argument,
        newsgroups=tuple(g.strip() for g in newsgroups.split(",") if g.strip())
        if newsgroups
        else (),
    )
    with state.open_metabase(create=False) as metabase:
        bindings = metabase.bindings(str(name), event_name)
    found = explain(bindings, state.registry, str(name), event_name, facts, datetime.now(UTC))
    if as_json:
        echo_json(
            [
                {
                    "id": e.binding.id,
                    "display_name": e.binding.display_name,
                    "sink_class": e.binding.sink_class,
                    "priority": e.binding.priority,
                    "fires": e.fires,
                    "reason": e.reason,
                }
                for e in found
            ]
        )
        return
    if not found:
        click.echo(f"no bindings for {name} {event_name}")
        return
    order = 0
    rows = []
    for entry in found:
        if entry.fires:
            order += 1
        rows.append(
            [
                str(order) if entry.fires else "-",
                "yes" if entry.fires else "no",
                entry.binding.priority,
                entry.binding.id,
                entry.binding.display_name or "",
                entry.binding.sink_class,
                entry.reason,
            ]
        )
    echo_table(["#", "FIRES", "PRIO", "ID", "NAME", "SINK", "WHY"], rows)
