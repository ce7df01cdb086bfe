"""The alias table: parsing it once, and expanding one recipient through it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from seo_core.sdk import PropertyValue

MAX_DEPTH = 8
"""How many times one recipient may be looked up along a single chain of aliases."""


class AliasError(ValueError):
    """The table is malformed, or an expansion goes deeper than :data:`MAX_DEPTH` levels."""


def canonical_domain(domain: str) -> str:
    """Lower case, no trailing dot, IDNA A-labels where the codec takes them.

    ``bücher.example`` and ``xn--bcher-kva.example`` are one domain, as in seo's rules.
    """
    labels = domain.strip().rstrip(".").split(".")
    return ".".join(_a_label(label) for label in labels)


def _a_label(label: str) -> str:
    if label.isascii():
        return label.lower()
    try:
        return label.encode("idna").decode("ascii")
    except UnicodeError:
        return label.casefold()


def canonical(address: str) -> str:
    """The form addresses are compared in: local part case-folded, domain canonical."""
    local, at, domain = address.strip().strip("<>").rpartition("@")
    if not at:
        return address.strip().casefold()
    return f"{local.casefold()}@{canonical_domain(domain)}"


def _domain(address: str) -> str:
    _, at, domain = address.rpartition("@")
    return canonical_domain(domain) if at else ""


def _bad_text(text: str) -> bool:
    return not text or any(ch.isspace() or ord(ch) < 32 or ch in "<>," for ch in text)


def _target(key: str, value: object) -> str:
    """Check one address a key maps to: a full ``local@domain``."""
    if not isinstance(value, str):
        raise AliasError(f"aliases.{key}: {value!r} is not an address (a string)")
    local, at, domain = value.rpartition("@")
    if not at or _bad_text(local) or _bad_text(domain):
        hint = f" (write {value}@<domain>)" if not at and not _bad_text(value) else ""
        raise AliasError(f"aliases.{key}: {value!r} is not an address like local@domain{hint}")
    return value


@dataclass(frozen=True, slots=True)
class AliasTable:
    """The ``aliases`` property, parsed: three lookups and the domains it covers.

    ``addresses`` maps full addresses, ``locals`` bare local parts (in every domain) and
    ``catch_alls`` domains (keys written ``@domain``), each to the addresses they stand for.
    ``domains`` holds the domains named by address and catch-all keys: with ``unknown = true``
    these are the domains the table lists completely.
    """

    addresses: Mapping[str, tuple[str, ...]]
    locals: Mapping[str, tuple[str, ...]]
    catch_alls: Mapping[str, tuple[str, ...]]
    domains: frozenset[str]

    @classmethod
    def parse(cls, table: Mapping[str, PropertyValue]) -> AliasTable:
        """Parse and check the table; raise :class:`AliasError` naming the key at fault."""
        addresses: dict[str, tuple[str, ...]] = {}
        locals_: dict[str, tuple[str, ...]] = {}
        catch_alls: dict[str, tuple[str, ...]] = {}
        written: dict[str, str] = {}
        for key, value in table.items():
            targets = _targets(key, value)
            local, at, domain = key.rpartition("@")
            if not at:
                kind, name = locals_, key.casefold()
                if _bad_text(key):
                    raise AliasError(f"aliases.{key}: a key is an address, a local part or @domain")
            elif _bad_text(domain) or (local and _bad_text(local)) or "@" in local:
                raise AliasError(f"aliases.{key}: a key is an address, a local part or @domain")
            elif not local:
                kind, name = catch_alls, canonical_domain(domain)
            else:
                kind, name = addresses, canonical(key)
            label = name if kind is not catch_alls else "@" + name
            if label in written:
                raise AliasError(
                    f"aliases.{key}: the same key as {written[label]!r} "
                    "(keys are matched case-insensitively)"
                )
            written[label] = key
            kind[name] = targets
        domains = frozenset(a.rpartition("@")[2] for a in addresses) | frozenset(catch_alls)
        parsed = cls(addresses, locals_, catch_alls, domains)
        parsed._check_depth(written)
        return parsed

    def lookup(self, address: str, *, catch_all: bool) -> tuple[str, ...] | None:
        """What ``address`` stands for: its own key, else its local part's, else the catch-all.

        The catch-all only applies to the recipient itself (``catch_all=True``), not to the
        addresses an alias expands to: those were written down on purpose.
        """
        name = canonical(address)
        found = self.addresses.get(name)
        if found is None and "@" in name:
            found = self.locals.get(name.rpartition("@")[0])
            if found is None and catch_all:
                found = self.catch_alls.get(name.rpartition("@")[2])
        elif found is None:
            found = self.locals.get(name)
        return found

    def expand(self, recipient: str) -> list[str] | None:
        """The addresses ``recipient`` resolves to, or ``None`` when no key matches it.

        Expansion is recursive, depth first, in table order, without duplicates. An address met
        again on its own chain (``alice`` -> ``alice, bob``) is kept as it is rather than
        expanded again, so self-references and loops end. A chain needing more than
        :data:`MAX_DEPTH` lookups raises :class:`AliasError`.
        """
        first = self.lookup(recipient, catch_all=True)
        if first is None:
            return None
        found: dict[str, str] = {}
        self._walk(first, (canonical(recipient),), (recipient,), found)
        return list(found.values())

    def is_unknown(self, recipient: str) -> bool:
        """True when no key matches ``recipient`` yet the table names its domain."""
        return _domain(recipient) in self.domains and self.lookup(recipient, catch_all=True) is None

    def _walk(
        self,
        targets: tuple[str, ...],
        path: tuple[str, ...],
        chain: tuple[str, ...],
        found: dict[str, str],
    ) -> None:
        for target in targets:
            name = canonical(target)
            more = None if name in path else self.lookup(target, catch_all=False)
            if more is None:
                found.setdefault(name, target)
                continue
            if len(path) >= MAX_DEPTH:
                route = " -> ".join((*chain, target))
                raise AliasError(f"{route}: more than {MAX_DEPTH} levels of aliases")
            self._walk(more, (*path, name), (*chain, target), found)

    def _check_depth(self, written: Mapping[str, str]) -> None:
        """Refuse, when the table is written, a chain that could never be expanded."""
        for label, key in written.items():
            if label.startswith("@"):
                targets = self.catch_alls[label[1:]]
            elif "@" in label:
                targets = self.addresses[label]
            else:
                targets = self.locals[label]
            try:
                self._walk(targets, (label,), (key,), {})
            except AliasError as exc:
                raise AliasError(f"aliases.{key}: {exc}") from None


def _targets(key: str, value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        return (_target(key, value),)
    if isinstance(value, list):
        if not value:
            raise AliasError(f"aliases.{key}: the list of addresses is empty")
        return tuple(_target(key, item) for item in value)
    raise AliasError(f"aliases.{key}: must be an address or a list of addresses")
