"""Writing the metabase as a config file that ``seo config apply`` turns back into it.

Every binding is written, whoever made it, with its ``id`` (so the GUID survives) and every
field that is not the default. Two things are not written as keys, because they are not
configuration: a binding's origin (applying the file makes the file its origin) and its fire
count and statistics (what happened, not what was asked for). The origin is written as a
comment above the binding, though: applied to the metabase it came from, the file collides
with every binding it does not already own, and the comment says whose each one is. Source
settings are not written either: the metabase does not store them.
"""

from __future__ import annotations

from seo_core.config import toml
from seo_core.config.model import ORIGIN_PREFIX
from seo_core.metabase import Binding, Metabase
from seo_core.properties import PropertyBag

INLINE_WIDTH = 100
"""A bag whose inline table would make a longer line is written as a sub-table instead."""

_HEADER = """\
# seo config file, written by `seo config export` from {path}.
# `seo config apply FILE` makes a metabase match it; the bindings below are then managed by
# FILE. A binding has one owner, so applied to the metabase it came from, FILE collides with
# each binding there that it does not manage yet, made by hand or managed by another config
# file (the comment above each binding says which). Apply it to another metabase
# (`seo --metabase PATH config apply FILE`); to move hand-made bindings under FILE, remove
# them first (their IDs are kept)."""

_METABASE = "# The metabase this file applies to, unless --metabase or SEO_METABASE names one."

_SOURCES = """\
# Sources. Their settings (listen, hostname, spool, ...) are not stored in the metabase, so none
# are exported: add them before running `seo serve --config` with this file."""


def export_config(metabase: Metabase, *, metabase_path: str | None = None) -> str:
    """The metabase's sources and bindings as TOML text (ends with a newline).

    ``metabase_path`` becomes the file's ``metabase`` key (``seo config export`` gives the
    absolute path of the metabase it read, so that applying the file goes back to it); leave
    it out to have the file apply to whichever metabase ``--metabase`` or ``SEO_METABASE``
    names, else ``./seo-metabase.db``.
    """
    # Paths in comments are TOML strings: no character of a path (a newline) can end a comment.
    blocks = [_HEADER.format(path=toml.string(str(metabase.path)))]
    if metabase_path is not None:
        blocks.append(f"{_METABASE}\nmetabase = {toml.string(metabase_path)}")
    sources = metabase.sources()
    if sources:
        blocks.append("\n".join([_SOURCES, *(f"[sources.{toml.string(s.name)}]" for s in sources)]))
    blocks += ["\n".join(_binding(binding)) for binding in metabase.bindings()]
    return "\n\n".join(blocks) + "\n"


def _origin_comment(origin: str | None) -> str:
    """Whose the binding is: the owner a collision would name if the file were applied back."""
    if origin is None:
        return "# made by hand with `seo bindings`"
    if origin.startswith(ORIGIN_PREFIX):
        return f"# managed by the config file {toml.string(origin.removeprefix(ORIGIN_PREFIX))}"
    return f"# origin {toml.string(origin)}"


def _binding(binding: Binding) -> list[str]:
    lines = [_origin_comment(binding.origin), "[[bindings]]"]
    lines.append(f"source = {toml.string(binding.source)}")
    lines.append(f"event = {toml.string(binding.event)}")
    if binding.display_name is not None:
        lines.append(f"name = {toml.string(binding.display_name)}")
    lines.append(f"id = {toml.string(binding.id)}")
    lines.append(f"sink = {toml.string(binding.sink_class)}")
    rest = dict(binding.source_properties.items())
    # Only the exact spellings go to the `rule` and `priority` keys, which apply stores under
    # those spellings; any other spelling stays in source_properties, so it round-trips too.
    for name, config_key in (("Rule", "rule"), ("Priority", "priority")):
        if name in rest:
            lines.append(f"{config_key} = {toml.value(rest.pop(name))}")
    if not binding.enabled:
        lines.append("enabled = false")
    if binding.max_firings:
        lines.append(f"max_firings = {binding.max_firings}")
    if binding.expiration is not None:
        lines.append(f"expires = {toml.value(binding.expiration)}")
    tables: list[str] = []
    for config_key, bag in (
        ("sink_properties", binding.sink_properties),
        ("source_properties", PropertyBag(rest)),
        ("binding_properties", binding.binding_properties),
    ):
        if not bag:
            continue
        inline = f"{config_key} = {toml.value(bag.to_dict())}"
        if len(inline) <= INLINE_WIDTH:
            lines.append(inline)
        else:
            tables += ["", f"[bindings.{config_key}]"]
            tables += [f"{toml.key(k)} = {toml.value(v)}" for k, v in bag.items()]
    return lines + tables
