"""The ``alias`` sink class: OnCategorize rewriting and expansion from the ``aliases`` table."""

from __future__ import annotations

from collections.abc import Mapping

from seo_core.sdk import CategorizeEvent, Prop, PropertyBag, PropertyValue, Schema, hookimpl
from seo_sink_alias._table import AliasError, AliasTable


class AliasSink:
    """Resolves each recipient through the ``aliases`` table of its binding.

    A recipient a key matches is rewritten to what the key stands for (expanded recursively); one
    no key matches is left to the server, unless ``unknown`` is true and the table names its
    domain, in which case it is marked unknown. A recipient an earlier sink already rewrote or
    marked unknown is left alone: the first sink that decides wins.
    """

    properties_schema = Schema(
        {
            "aliases": Prop(
                dict,
                required=True,
                help="table: address, local part or @domain -> address or list of addresses",
            ),
            "unknown": Prop(
                bool,
                default=False,
                help="mark unknown the recipients of the table's domains that no key matches",
            ),
        }
    )

    def __init__(self) -> None:
        self._parsed: tuple[object, AliasTable] | None = None

    @staticmethod
    def validate_properties(properties: Mapping[str, PropertyValue]) -> None:
        """Parse the table as the sink will, so a bad key or address is refused when written."""
        aliases = PropertyBag(properties).get("aliases")
        if isinstance(aliases, dict) and list(aliases) == ["env"]:
            raise ValueError(
                "aliases: a table whose only key is 'env' reads as an environment reference; "
                "the alias table cannot come from the environment"
            )
        if isinstance(aliases, dict):
            AliasTable.parse(aliases)

    def table(self, sink_properties: PropertyBag) -> AliasTable:
        """The parsed table, kept as long as the binding (and so its properties) is the same."""
        aliases = sink_properties.get("aliases")
        if self._parsed is not None and self._parsed[0] is aliases:
            return self._parsed[1]
        if not isinstance(aliases, dict):
            raise AliasError("aliases: is required and must be a table")
        table = AliasTable.parse(aliases)
        self._parsed = (aliases, table)
        return table

    @hookimpl
    def smtp_on_categorize(self, event: CategorizeEvent, sink_properties: PropertyBag) -> None:
        if event.resolved is not None or event.unknown:
            return
        table = self.table(sink_properties)
        expanded = table.expand(event.recipient)
        if expanded is not None:
            event.rewrite(*expanded)
        elif sink_properties.get("unknown", False) is True and table.is_unknown(event.recipient):
            event.mark_unknown()
