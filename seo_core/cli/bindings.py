"""``seo bindings``: add, list, show, change and remove bindings (the modern smtpreg.vbs)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click

from seo_core.catalog import parse_source
from seo_core.cli.app import State, cli, pass_state
from seo_core.cli.output import (
    binding_json,
    describe,
    echo_binding,
    echo_json,
    echo_table,
    stats_json,
)
from seo_core.errors import SinkLoadError, SinkNotFoundError, ValidationError
from seo_core.guids import parse_guid
from seo_core.metabase import Binding, BindingCheck, BindingRef, BindingSpec
from seo_core.metabase.validation import EXPIRATION_RANGE, MAX_FIRINGS_LIMIT, check_expiration
from seo_core.properties import BAGS, PropertyValue, parse_assignment, parse_cli_value
from seo_core.rules import parse_rule, rule_warnings

BINDING_HELP = 'BINDING is a binding GUID, or the three words SOURCE EVENT "DisplayName".'
BINDING_METAVAR = "BINDING"
"""One binding, though it may take three words: ``BINDING...`` would promise several."""


def parse_binding_ref(words: Sequence[str]) -> BindingRef:
    """One word is a GUID; three are ``SOURCE EVENT DisplayName``."""
    if len(words) == 1:
        return words[0]
    if len(words) == 3 and not all(_is_guid(word) for word in words):
        return (words[0], words[1], words[2])
    if len(words) > 1 and all(_is_guid(word) for word in words):
        raise click.UsageError(
            f"expected one binding, got {len(words)} GUIDs; give each binding its own command. "
            f"{BINDING_HELP}"
        )
    raise click.UsageError(
        f"expected a binding GUID or SOURCE EVENT NAME, got {len(words)} words. {BINDING_HELP}"
    )


def _is_guid(word: str) -> bool:
    try:
        parse_guid(word)
    except ValidationError:
        return False
    return True


_DURATION = re.compile(r"^\+(\d+)([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_when(text: str) -> datetime:
    """``--expires``: an ISO 8601 instant, or ``+N`` with a unit (``+30d``, ``+12h``).

    A date or time without a zone means local time, as an administrator typing it would.
    The instant is checked as the metabase checks an Expiration, so a refusal names the option.
    """
    try:
        when = _when(text)
        check_expiration(when)
    except OverflowError:
        # +99999999999d, or a local time outside the years 1..9999 once made UTC.
        raise ValidationError("--expires", text, EXPIRATION_RANGE) from None
    except ValidationError as exc:
        raise ValidationError("--expires", text, exc.reason) from None
    return when


def _when(text: str) -> datetime:
    match = _DURATION.match(text.strip())
    if match:
        return datetime.now(UTC) + timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValidationError(
            "--expires", text, "expected an ISO 8601 time (2027-01-31T18:00) or +N[smhdw]"
        ) from None
    return when if when.tzinfo is not None else when.astimezone()


def _assignments(option: str, values: Sequence[str]) -> dict[str, PropertyValue]:
    items: dict[str, PropertyValue] = {}
    for text in values:
        key, value = parse_assignment(option, text)
        items[key] = value
    return items


def _warn_rule(source: str, event: str, rule: str) -> None:
    kind = parse_source(source).source_type.event(event).rule_kind
    for warning in rule_warnings(parse_rule(rule, kind)):
        click.echo(f"seo: warning: {warning}", err=True)


def sink_check(state: State, *, allow_missing: bool) -> BindingCheck:
    """Refuse a binding whose sink is not installed or refuses its SinkProperties.

    With ``allow_missing`` a sink that is not installed (or fails to load) is let through: the
    binding is stored and shows as unavailable until the sink is installed. Bad properties of an
    installed sink are refused either way.
    """

    def check(binding: Binding) -> None:
        try:
            state.registry.check_binding(binding)
        except (SinkNotFoundError, SinkLoadError):
            if not allow_missing:
                raise

    return check


def paths_from_here(
    state: State, sink: str, properties: dict[str, PropertyValue]
) -> dict[str, PropertyValue]:
    """The sink's path properties (``root``, ``File``...) made absolute against the folder the
    command runs in: that is what a relative path typed there means, wherever the server runs.
    """
    from seo_core.config.load import absolute_path_properties  # not for `seo --help`

    try:
        info = state.registry.resolve(sink)
    except (SinkNotFoundError, SinkLoadError):
        return properties  # stored as given; the sink is not there to say which are paths
    return absolute_path_properties(properties, info.target, Path.cwd())


def note_if_managed(binding: Binding) -> None:
    """Say on stderr that a hand-made change to a config file's binding will not last.

    The change is made all the same (an administrator may need it now), but the next apply of
    that file makes the binding what the file says again, and that should be no surprise.
    """
    if binding.origin is None:
        return
    from seo_core.config import ORIGIN_PREFIX  # only for a binding that has an origin

    if not binding.origin.startswith(ORIGIN_PREFIX):
        return
    file = binding.origin.removeprefix(ORIGIN_PREFIX)
    click.echo(
        f"seo: note: this binding comes from the config file {file}; the next "
        f"`seo config apply` or `seo serve --config` of that file puts it back as the file says",
        err=True,
    )


@cli.group()
def bindings() -> None:
    """Manage bindings: which sink handles which event of which source."""


@bindings.command("add")
@click.argument("source")
@click.argument("event")
@click.argument("name")
@click.argument("sink")
@click.option("--rule", help="Rule source property, e.g. 'mail from=*@example.com'.")
@click.option("--priority", help="0 (first) .. 32767 (last), or PRIO_HIGH etc. Default 24575.")
@click.option(
    "--id", "binding_id", metavar="GUID", help="Use this binding ID instead of a new one."
)
@click.option("--disabled", is_flag=True, help="Add the binding disabled.")
@click.option(
    "--max-firings",
    type=click.IntRange(min=0, max=MAX_FIRINGS_LIMIT),
    default=0,
    show_default=True,
    help="Notifications allowed before the binding disables itself; 0 = unlimited.",
)
@click.option("--expires", metavar="WHEN", help="ISO 8601 time or +N[smhdw] after which it stops.")
@click.option("--sink-prop", multiple=True, metavar="K=V", help="A SinkProperties entry.")
@click.option("--source-prop", multiple=True, metavar="K=V", help="A SourceProperties entry.")
@click.option(
    "--binding-prop",
    multiple=True,
    metavar="K=V",
    help="An EventBindingProperties entry (Timeout=SECONDS).",
)
@click.option(
    "--allow-missing",
    is_flag=True,
    help="Store the binding even if SINK is not installed (it shows as unavailable).",
)
@pass_state
def add(
    state: State,
    source: str,
    event: str,
    name: str,
    sink: str,
    rule: str | None,
    priority: str | None,
    binding_id: str | None,
    disabled: bool,
    max_firings: int,
    expires: str | None,
    sink_prop: tuple[str, ...],
    source_prop: tuple[str, ...],
    binding_prop: tuple[str, ...],
    allow_missing: bool,
) -> None:
    """Bind SINK to EVENT of SOURCE under the display name NAME.

    \b
    Example:
      seo bindings add smtp/1 OnArrival "Tag mail" headers \\
          --rule "mail from=*@example.com" --sink-prop 'add={"X-Tag" = "yes"}'
    """
    if not name.strip():
        # The metabase's own message says to omit the DisplayName; NAME cannot be omitted here.
        raise ValidationError("NAME", name, "must not be empty; it is the binding's DisplayName")
    source_properties = _assignments("--source-prop", source_prop)
    if rule is not None:
        source_properties["Rule"] = rule
    if priority is not None:
        source_properties["Priority"] = parse_cli_value(priority)
    spec = BindingSpec(
        source=source,
        event=event,
        sink_class=sink,
        display_name=name,
        id=binding_id,
        enabled=not disabled,
        max_firings=max_firings,
        expiration=parse_when(expires) if expires else None,
        sink_properties=paths_from_here(state, sink, _assignments("--sink-prop", sink_prop)),
        source_properties=source_properties,
        binding_properties=_assignments("--binding-prop", binding_prop),
    )
    with state.open_metabase() as metabase:
        binding = metabase.add_binding(spec, check=sink_check(state, allow_missing=allow_missing))
    if binding.rule:
        _warn_rule(binding.source, binding.event, binding.rule)
    click.echo(f"added {describe(binding)} (priority {binding.priority})")


@bindings.command("list")
@click.argument("source", required=False)
@click.argument("event", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@pass_state
def list_(state: State, source: str | None, event: str | None, as_json: bool) -> None:
    """List bindings, optionally of one SOURCE and EVENT, in firing order."""
    with state.open_metabase(create=False) as metabase:
        found = metabase.bindings(source, event)
    if as_json:
        echo_json([binding_json(b) for b in found])
        return
    if not found:
        click.echo("no bindings")
        return
    echo_table(
        ["ID", "SOURCE", "EVENT", "PRIO", "ENABLED", "NAME", "SINK", "RULE"],
        [
            [
                b.id,
                b.source,
                b.event,
                b.priority,
                "yes" if b.enabled else "no",
                b.display_name or "",
                b.sink_class,
                b.rule,
            ]
            for b in found
        ],
    )


@bindings.command("show", epilog=BINDING_HELP)
@click.argument("binding", nargs=-1, required=True, metavar=BINDING_METAVAR)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@pass_state
def show(state: State, binding: tuple[str, ...], as_json: bool) -> None:
    """Show every field of one BINDING."""
    with state.open_metabase(create=False) as metabase:
        found = metabase.binding(parse_binding_ref(binding))
        stats = metabase.stats(found.id)
    if as_json:
        echo_json({**binding_json(found), "stats": stats_json(stats)})
    else:
        echo_binding(found, stats)


@bindings.command("remove", epilog=BINDING_HELP)
@click.argument("binding", nargs=-1, required=True, metavar=BINDING_METAVAR)
@pass_state
def remove(state: State, binding: tuple[str, ...]) -> None:
    """Delete one BINDING and its properties."""
    with state.open_metabase() as metabase:
        removed = metabase.remove_binding(parse_binding_ref(binding))
    click.echo(f"removed {describe(removed)}")
    note_if_managed(removed)


@bindings.command("enable", epilog=BINDING_HELP)
@click.argument("binding", nargs=-1, required=True, metavar=BINDING_METAVAR)
@pass_state
def enable(state: State, binding: tuple[str, ...]) -> None:
    """Enable one BINDING (its fire count is kept)."""
    with state.open_metabase() as metabase:
        changed = metabase.set_enabled(parse_binding_ref(binding), True)
    click.echo(f"enabled {describe(changed)}")
    note_if_fired_out(changed)
    note_if_managed(changed)


def note_if_fired_out(binding: Binding) -> None:
    """Say on stderr that an enabled binding whose MaxFirings budget is used up still does not
    fire, and how it gets a new budget: enabling keeps the fire count, on purpose."""
    if not binding.fired_out:
        return
    from seo_core.config import ORIGIN_PREFIX  # only for a binding that fired out

    used = f"{binding.fire_count} of {binding.max_firings}"
    if binding.origin is not None and binding.origin.startswith(ORIGIN_PREFIX):
        how = (
            f"give it another max_firings in {binding.origin.removeprefix(ORIGIN_PREFIX)} and "
            "apply that file (a changed max_firings starts the count over)"
        )
    else:
        how = (
            f"remove it and add it again with `--max-firings N` (and `--id {binding.id}` to keep "
            "its GUID); the count starts over"
        )
    click.echo(
        f"seo: note: this binding has used up its MaxFirings budget ({used}) and is not "
        f"notified until it gets a new one: {how}",
        err=True,
    )


@bindings.command("disable", epilog=BINDING_HELP)
@click.argument("binding", nargs=-1, required=True, metavar=BINDING_METAVAR)
@pass_state
def disable(state: State, binding: tuple[str, ...]) -> None:
    """Disable one BINDING: its sink is no longer notified."""
    with state.open_metabase() as metabase:
        changed = metabase.set_enabled(parse_binding_ref(binding), False)
    click.echo(f"disabled {describe(changed)}")
    note_if_managed(changed)


def _split_prop_args(words: Sequence[str], tail: int, usage: str) -> tuple[BindingRef, list[str]]:
    if len(words) not in (1 + tail, 3 + tail):
        raise click.UsageError(f"expected {usage}. {BINDING_HELP}")
    ref = parse_binding_ref(words[:-tail])
    rest = list(words[-tail:])
    if rest[0].lower() not in BAGS:
        raise click.UsageError(f"bag must be one of {', '.join(BAGS)}, not {rest[0]!r}")
    rest[0] = rest[0].lower()
    return ref, rest


@bindings.command(
    "set-prop",
    epilog=BINDING_HELP,
    # A VALUE may be negative (``Priority -5`` must reach the range check, not be an option).
    context_settings={"ignore_unknown_options": True},
)
@click.argument("words", nargs=-1, required=True, metavar="BINDING {sink|source|binding} KEY VALUE")
@pass_state
def set_prop(state: State, words: tuple[str, ...]) -> None:
    """Add or overwrite one property of a binding.

    VALUE is read as a TOML literal when it is one (10, true, ["a", "b"]), else as text. The
    line printed shows the value stored, as a TOML literal.
    """
    ref, (bag, key, value) = _split_prop_args(words, 3, "BINDING BAG KEY VALUE")
    with state.open_metabase() as metabase:
        parsed = parse_cli_value(value)
        if bag == "sink":
            sink = metabase.binding(ref).sink_class
            parsed = paths_from_here(state, sink, {key: parsed})[key]
        changed = metabase.set_property(
            ref, bag, key, parsed, check=sink_check(state, allow_missing=True)
        )
    if bag == "source" and key.casefold() == "rule":
        _warn_rule(changed.source, changed.event, changed.rule)
    from seo_core.config import toml  # not for `seo --help`

    # As a TOML literal: the syntax VALUE was typed in, so the line can be copied back.
    shown = toml.value(changed.bag(bag)[key])
    click.echo(f"set {bag} property {toml.key(key)} = {shown} on {describe(changed)}")
    note_if_managed(changed)


@bindings.command("del-prop", epilog=BINDING_HELP)
@click.argument("words", nargs=-1, required=True, metavar="BINDING {sink|source|binding} KEY")
@pass_state
def del_prop(state: State, words: tuple[str, ...]) -> None:
    """Remove one property of a binding."""
    ref, (bag, key) = _split_prop_args(words, 2, "BINDING BAG KEY")
    with state.open_metabase() as metabase:
        changed = metabase.delete_property(
            ref, bag, key, check=sink_check(state, allow_missing=True)
        )
    click.echo(f"deleted {bag} property {key} from {describe(changed)}")
    note_if_managed(changed)
