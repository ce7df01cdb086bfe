"""The ``Rule`` source property: parsed once when a binding is written, matched on every event.

A rule decides whether an event notifies a binding, so :meth:`Rule.matches` runs once per binding
per event. Everything that can be decided from the rule text alone (keyword lookup, pattern shape,
case folding and IDNA conversion of the pattern) is therefore done by :func:`parse_rule`, which
compiles each condition into a small closure; matching only canonicalizes the facts of the event,
and does that through bounded caches so one address is converted once however many conditions and
bindings look at it.

The grammar (DESIGN.md section 4)::

    rule      := condition { ";" condition }
    condition := keyword [ "=" pattern ]

White space around ``;`` and ``=`` is ignored, as is an empty condition (a trailing ``;``).
Keywords and patterns are case-insensitive. No rule, or an empty one, matches every event.

Only ``*`` is special in any pattern: ``?``, ``[`` and ``]`` are ordinary characters. Matching is
done with plain string operations rather than :mod:`fnmatch` or :mod:`glob`, whose behaviour varies
with the operating system (case folding on Windows) and which treat ``[...]`` as a class, so a rule
matches the same events on every platform.

Choices this module makes where the original documentation is silent:

* Transport and news rules: conditions with the same keyword are OR-ed and groups of different
  keywords are AND-ed, so ``rcpt to=*@a.example;rcpt to=*@b.example`` means either domain and
  ``ehlo=*.example.net;mail from=*@example.com`` needs both.
* Protocol rules: every condition is an alternative (OR). A protocol event carries one command, so
  AND-ing conditions on different verbs could never match; ``EHLO;HELO`` is the common form.
* A condition whose fact is missing (``None``, an empty EHLO name, no recipients) does not match.
* The null sender ``<>`` (``mail_from == ""``) has no local part and no domain: ``mail from=*``
  matches it (``*`` alone means any sender at all), ``mail from=<>`` matches only it, and any
  pattern naming a name or a domain, ``*@*`` included, does not.
* Domains are compared as IDNA A-labels (``bücher.example`` is ``xn--bcher-kva.example``) using the
  standard library's IDNA 2003 codec; a label it refuses is compared case-folded instead.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple, TypeAlias

from seo_core.catalog import RuleKind
from seo_core.errors import RuleError

__all__ = ["Condition", "EventFacts", "Rule", "matches", "parse_rule", "rule_warnings"]


@dataclass(frozen=True, slots=True)
class Condition:
    """One ``keyword[=pattern]`` of a rule.

    ``keyword`` is normalized (lower case, inner white space collapsed, ``helo`` read as ``ehlo``
    for transport rules) so that two spellings of one rule compare equal; ``pattern`` is kept as
    written, minus surrounding white space, so messages can quote it back to the administrator.
    """

    keyword: str
    pattern: str | None


@dataclass(frozen=True, slots=True)
class EventFacts:
    """What a source knows about an event, in the form rules are matched against.

    Sources fill in only what the event has; a rule condition whose fact is missing does not match.
    Addresses are given without angle brackets (they are tolerated), ``""`` being the null sender.
    """

    ehlo: str | None = None
    """The EHLO/HELO name the client gave."""
    mail_from: str | None = None
    """The reverse path without angle brackets; ``""`` is the null sender ``<>``."""
    rcpt_to: tuple[str, ...] = ()
    """The recipients, without angle brackets."""
    command: str | None = None
    """Protocol events: the command verb in any case (``"MAIL"``, ``"ehlo"``, ``"XFOO"``)."""
    argument: str | None = None
    """Protocol events: the command's argument (``"FROM:<a@b.example> SIZE=10"``)."""
    newsgroups: tuple[str, ...] = ()
    """News events: the groups an article is posted to."""


_FactsMatcher: TypeAlias = Callable[[EventFacts], bool]
_TextMatcher: TypeAlias = Callable[[str], bool]
_ArgumentMatcher: TypeAlias = Callable[[str | None], bool]


def _uncompiled(facts: EventFacts) -> bool:
    """Placeholder default of :attr:`Rule._match`; ``__post_init__`` always replaces it."""
    raise AssertionError("Rule was not compiled")  # pragma: no cover


@dataclass(frozen=True, slots=True)
class Rule:
    """A parsed ``Rule`` source property, ready to match events.

    Build it with :func:`parse_rule`. Constructing it directly from conditions also works (the
    conditions are validated and compiled then), so a rule is never out of step with its matcher.
    Two rules are equal when their text, kind and conditions are; the compiled matcher is derived
    data and takes no part in comparison, hashing or ``repr``.
    """

    text: str
    kind: RuleKind
    conditions: tuple[Condition, ...]
    _match: _FactsMatcher = field(default=_uncompiled, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self._match is _uncompiled:
            try:
                compiled = _compile(self.kind, self.conditions)
            except _Invalid as exc:
                where = "" if exc.index is None else f"{_describe(self.conditions, exc.index)}: "
                raise RuleError(self.text, where + exc.reason) from None
            object.__setattr__(self, "_match", compiled)

    def matches(self, facts: EventFacts) -> bool:
        """Whether the event described by ``facts`` notifies the binding that has this rule."""
        return self._match(facts)

    @property
    def is_empty(self) -> bool:
        """An empty rule has no conditions and matches every event."""
        return not self.conditions


def parse_rule(text: str | None, kind: RuleKind) -> Rule:
    """Parse and compile the ``Rule`` text of an event whose rule grammar is ``kind``.

    This runs when a binding is written, so a rule that could never work is refused then, with a
    :class:`RuleError` naming the condition (its number, column and text) and what is wrong,
    rather than silently never matching at run time. ``None`` and blank text give the empty rule.
    """
    written = "" if text is None else text
    pieces = _split_conditions(written)
    if not pieces:
        return Rule(written, kind, (), _match=_match_everything)
    if kind is RuleKind.NONE:
        raise RuleError(written, "this event takes no Rule; leave the Rule empty")
    conditions: list[Condition] = []
    for number, (column, piece) in enumerate(pieces, start=1):
        try:
            conditions.append(_parse_condition(piece, kind))
        except _Invalid as exc:
            raise RuleError(written, _where(number, column, piece) + exc.reason) from None
    try:
        compiled = _compile(kind, tuple(conditions))
    except _Invalid as exc:
        index = 0 if exc.index is None else exc.index
        column, piece = pieces[index]
        raise RuleError(written, _where(index + 1, column, piece) + exc.reason) from None
    return Rule(written, kind, tuple(conditions), _match=compiled)


def matches(rule: Rule, facts: EventFacts) -> bool:
    """Whether ``rule`` matches the event described by ``facts``; the same as ``rule.matches``."""
    return rule._match(facts)


def rule_warnings(rule: Rule) -> list[str]:
    """Advice about conditions that are valid but probably do not mean what was intended.

    The documented domain pattern ``*example.com`` is a plain suffix, so it also matches
    ``notexample.com``; administrators nearly always mean "example.com and its subdomains",
    which is ``*.example.com`` plus ``example.com``. News group names cannot contain commas, so a
    comma-separated list in one ``newsgroups=`` pattern never matches.
    """
    warnings: list[str] = []
    for condition in rule.conditions:
        pattern = condition.pattern
        if pattern is None:
            continue
        keyword = _normalize_keyword(condition.keyword)
        shown = f"{condition.keyword}={pattern}"
        if rule.kind is RuleKind.NNTP:
            if "," in pattern:
                warnings.append(
                    f"condition {shown!r}: group names never contain ',', so this pattern matches "
                    "nothing; write one newsgroups= condition per pattern, separated by ';'"
                )
            continue
        name: str | None = None
        if keyword in ("ehlo", "helo"):
            domain = pattern.strip()
        elif keyword in ("mail from", "rcpt to"):
            parts = _address_parts(pattern)
            if parts is None or parts[1] is None:
                continue
            name, domain = parts[0], parts[1]
        else:
            continue
        if len(domain) < 2 or not domain.startswith("*") or domain[1] == ".":
            continue
        suffix = domain[1:]
        prefix = keyword + "=" + ("" if name is None else name + "@")
        warnings.append(
            f"condition {shown!r}: the domain pattern {domain!r} also matches domains that only "
            f"end in the same letters, such as 'not{suffix}'; for {suffix} and its subdomains "
            f"write '{prefix}*.{suffix};{prefix}{suffix}'"
        )
    return warnings


# --- parsing -------------------------------------------------------------------------------------


class _Invalid(Exception):
    """A condition is wrong; ``index`` (into the conditions) is added by the loop that saw it."""

    def __init__(self, reason: str, index: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.index = index


def _split_conditions(text: str) -> list[tuple[int, str]]:
    """The non-empty conditions of ``text``, stripped, each with its 1-based column."""
    pieces: list[tuple[int, str]] = []
    start = 0
    for chunk in text.split(";"):
        stripped = chunk.strip()
        if stripped:
            pieces.append((start + len(chunk) - len(chunk.lstrip()) + 1, stripped))
        start += len(chunk) + 1
    return pieces


def _where(number: int, column: int, piece: str) -> str:
    return f"condition {number} at column {column} ({piece!r}): "


def _describe(conditions: tuple[Condition, ...], index: int) -> str:
    condition = conditions[index]
    shown = condition.keyword
    if condition.pattern is not None:
        shown += "=" + condition.pattern
    return f"condition {index + 1} ({shown!r})"


def _normalize_keyword(keyword: str) -> str:
    return " ".join(keyword.split()).lower()


def _parse_condition(piece: str, kind: RuleKind) -> Condition:
    """Split one condition at its first ``=``; later ``=`` belong to the pattern (``SRS0=...``)."""
    keyword_text, equals, pattern_text = piece.partition("=")
    keyword = _normalize_keyword(keyword_text)
    if not keyword:
        raise _Invalid("no keyword before '='; a condition is keyword=pattern")
    pattern: str | None = None
    if equals:
        pattern = pattern_text.strip()
        if not pattern:
            raise _Invalid(f"no pattern after '{keyword}='; use '{keyword}=*' for any")
    if kind is RuleKind.TRANSPORT and keyword == "helo":
        keyword = "ehlo"
    return Condition(keyword, pattern)


def _required_pattern(condition: Condition, example: str) -> str:
    if condition.pattern is None or not condition.pattern.strip():
        raise _Invalid(f"{condition.keyword!r} needs a pattern, for example {example!r}")
    return condition.pattern.strip()


_KNOWN = {
    RuleKind.TRANSPORT: "ehlo (or helo), mail from, rcpt to",
    RuleKind.PROTOCOL: (
        "a command verb of letters and digits (EHLO, HELO, MAIL, RCPT, DATA, AUTH, ...) "
        "or mail from, rcpt to"
    ),
    RuleKind.NNTP: "newsgroups",
}


def _unknown(keyword: str, kind: RuleKind) -> _Invalid:
    return _Invalid(f"unknown keyword {keyword!r}; {kind.value} rules know: {_KNOWN[kind]}")


# --- canonical forms -----------------------------------------------------------------------------


class _Address(NamedTuple):
    """An address in the form patterns are compared with."""

    local: str | None
    """The local part as written, case-folded; ``None`` only for the null sender."""
    domain: str | None
    """The canonical domain; ``None`` when the address has none (``postmaster``, ``<>``)."""


_NULL_SENDER = _Address(None, None)

# Full stops that IDNA treats as label separators (ideographic, full-width, half-width).
_IDNA_DOTS = str.maketrans({"\u3002": ".", "\uff0e": ".", "\uff61": "."})


@functools.lru_cache(maxsize=4096)
def _canonical_domain(domain: str) -> str:
    """Lower case, no trailing dot, each label an IDNA A-label (``xn--...``) where it can be.

    Patterns and facts both go through here, so ``bücher.example``, ``BÜCHER.example.`` and
    ``xn--bcher-kva.example`` are one domain. A label the codec refuses (too long, prohibited
    characters) is case-folded instead, which still compares consistently.
    """
    text = domain.strip()
    if text.isascii():
        return text.rstrip(".").lower()
    labels = text.translate(_IDNA_DOTS).rstrip(".").split(".")
    return ".".join(_a_label(label) for label in labels)


def _a_label(label: str) -> str:
    if label.isascii():
        return label.lower()
    try:
        return label.encode("idna").decode("ascii")
    except UnicodeError:
        return label.casefold()


@functools.lru_cache(maxsize=4096)
def _canonical_address(address: str) -> _Address:
    """Split an address at its last ``@`` and canonicalize both halves.

    The local part may itself contain ``@`` when quoted (``"a@b"@example.com``), which is why the
    last one counts. A source route (``@relay.example:user@example.com``) is dropped: the mailbox
    is what follows the colon. Surrounding angle brackets are tolerated; ``""`` and ``<>`` are the
    null sender.
    """
    text = address.strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1].strip()
    if not text:
        return _NULL_SENDER
    if text.startswith("@"):
        _route, colon, mailbox = text.partition(":")
        if colon:
            text = mailbox
    at = text.rfind("@")
    if at < 0:
        return _Address(text.casefold(), None)
    return _Address(text[:at].casefold(), _canonical_domain(text[at + 1 :]) or None)


_PATH_PREFIX = re.compile(r"\s*([A-Za-z]+)\s*:\s*")


@functools.lru_cache(maxsize=4096)
def _argument_address(argument: str, prefix: str) -> _Address | None:
    """The address in a ``MAIL``/``RCPT`` argument (``FROM:<addr> SIZE=10``), without parameters.

    ``prefix`` is ``"from"`` or ``"to"``. Spaces after the colon are tolerated, as many clients
    send them; an argument with another prefix or an unclosed ``<`` has no address.
    """
    found = _PATH_PREFIX.match(argument)
    if found is None or found.group(1).lower() != prefix:
        return None
    rest = argument[found.end() :]
    if rest.startswith("<"):
        end = _closing_bracket(rest)
        if end < 0:
            return None
        return _canonical_address(rest[1:end])
    words = rest.split(maxsplit=1)
    return _canonical_address(words[0]) if words else None


def _closing_bracket(text: str) -> int:
    """Index of the ``>`` that closes ``text[0] == "<"``, skipping quoted strings; -1 if none."""
    quoted = escaped = False
    for index in range(1, len(text)):
        char = text[index]
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == ">" and not quoted:
            return index
    return -1


# --- pattern compilers ---------------------------------------------------------------------------


def _match_everything(facts: EventFacts) -> bool:
    return True


def _always(value: object) -> bool:
    return True


def _compile_glob(pattern: str) -> _TextMatcher:
    """A case-insensitive matcher where ``*`` is any run of characters and nothing else is special.

    The returned function expects text that is already case-folded, so the caller folds each fact
    once. Leftmost-first search is complete for ``*``-only patterns, so no backtracking is needed.
    """
    folded = pattern.casefold()
    parts = folded.split("*")
    if len(parts) == 1:
        return lambda text: text == folded
    head, tail = parts[0], parts[-1]
    middle = tuple(part for part in parts[1:-1] if part)
    if not head and not tail and not middle:
        return _always
    shortest = len(head) + len(tail)

    def glob(text: str) -> bool:
        if len(text) < shortest or not text.startswith(head) or not text.endswith(tail):
            return False
        position, end = len(head), len(text) - len(tail)
        for part in middle:
            found = text.find(part, position, end)
            if found < 0:
                return False
            position = found + len(part)
        return True

    return glob


def _compile_name(pattern: str) -> _TextMatcher:
    """``*``, ``x``, ``*x``, ``x*`` or ``*x*``: any, exact, suffix, prefix, substring."""
    folded = pattern.casefold()
    if folded == "*":
        return _always
    leading, trailing = folded.startswith("*"), folded.endswith("*")
    core = folded[1 if leading else 0 : len(folded) - 1 if trailing else len(folded)]
    if not core or "*" in core:
        raise _Invalid(
            f"name pattern {pattern!r} may have '*' only at its start and end: "
            "use *, name, *name, name* or *name*"
        )
    if leading and trailing:
        return lambda local: core in local
    if leading:
        return lambda local: local.endswith(core)
    if trailing:
        return lambda local: local.startswith(core)
    return lambda local: local == core


def _compile_domain(pattern: str) -> _TextMatcher:
    """``*`` (any), ``example.com`` (exact) or ``*example.com`` (ends with, itself included).

    The part after ``*`` is canonicalized like a domain, so ``*.BÜCHER.example`` works; since
    A-labels encode a whole label, a non-ASCII partial label after ``*`` matches only that label.
    """
    text = pattern.strip()
    if text == "*":
        return _always
    if "@" in text:
        raise _Invalid(f"{pattern!r} is not a domain pattern (it has '@'); use *, host or *suffix")
    suffix = text.startswith("*")
    if "*" in text[1:]:
        raise _Invalid(
            f"domain pattern {pattern!r} may have '*' only at its start: "
            "use *, example.com, *.example.com or *example.com"
        )
    domain = _canonical_domain(text[1:] if suffix else text)
    if not domain:
        raise _Invalid(f"domain pattern {pattern!r} names no domain")
    if suffix:
        return lambda candidate: candidate.endswith(domain)
    return lambda candidate: candidate == domain


def _address_parts(pattern: str) -> tuple[str, str | None] | None:
    """``(name, domain or None)`` of an address pattern, or ``None`` for the null sender ``<>``.

    Surrounding angle brackets are tolerated. The split is at the last ``@``, as for addresses.
    """
    text = pattern.strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1].strip()
        if not text:
            return None
    name, at, domain = text.rpartition("@")
    if not at:
        return text, None
    return name.strip(), domain.strip()


def _compile_address(pattern: str, *, null_allowed: bool) -> Callable[[_Address], bool]:
    """A matcher for ``name-pattern [@ domain-pattern]``, ``*`` (any address) or ``<>``.

    A pattern without ``@`` is a name pattern that accepts any domain, and also an address with
    none (``rcpt to=postmaster``); ``*@*`` insists on a domain, so it excludes ``<>``.
    """
    parts = _address_parts(pattern)
    if parts is None:
        if not null_allowed:
            raise _Invalid("'<>' (the null sender) can only be a mail from pattern")
        return lambda address: address.local is None
    name, domain = parts
    if domain is None and name == "*":
        return _always
    if not name:
        raise _Invalid(f"address pattern {pattern!r} has no name before '@'; use *@domain")
    if domain == "":
        raise _Invalid(f"address pattern {pattern!r} has no domain after '@'; use name@*")
    name_matches = _compile_name(name)
    if domain is None:
        return lambda address: address.local is not None and name_matches(address.local)
    domain_matches = _compile_domain(domain)

    def address_matches(address: _Address) -> bool:
        local, host = address.local, address.domain
        if local is None or host is None:
            return False
        return name_matches(local) and domain_matches(host)

    return address_matches


# --- rule compilers ------------------------------------------------------------------------------


def _compile(kind: RuleKind, conditions: tuple[Condition, ...]) -> _FactsMatcher:
    """Validate ``conditions`` for ``kind`` and build the rule's matcher."""
    if not conditions:
        return _match_everything
    if kind is RuleKind.TRANSPORT:
        return _compile_transport(conditions)
    if kind is RuleKind.PROTOCOL:
        return _compile_protocol(conditions)
    if kind is RuleKind.NNTP:
        return _compile_nntp(conditions)
    raise _Invalid("this event takes no Rule; leave the Rule empty", 0)


def _compile_transport(conditions: tuple[Condition, ...]) -> _FactsMatcher:
    """Group patterns by keyword; a group matches if any pattern does, the rule if every group."""
    ehlo: list[_TextMatcher] = []
    senders: list[Callable[[_Address], bool]] = []
    recipients: list[Callable[[_Address], bool]] = []
    for index, condition in enumerate(conditions):
        keyword = _normalize_keyword(condition.keyword)
        try:
            if keyword in ("ehlo", "helo"):
                ehlo.append(_compile_domain(_required_pattern(condition, "ehlo=*.example.net")))
            elif keyword == "mail from":
                pattern = _required_pattern(condition, "mail from=*@example.com")
                senders.append(_compile_address(pattern, null_allowed=True))
            elif keyword == "rcpt to":
                pattern = _required_pattern(condition, "rcpt to=*@example.com")
                recipients.append(_compile_address(pattern, null_allowed=False))
            else:
                raise _unknown(condition.keyword, RuleKind.TRANSPORT)
        except _Invalid as exc:
            raise _Invalid(exc.reason, index) from None
    groups: list[_FactsMatcher] = []
    if ehlo:
        groups.append(_ehlo_group(tuple(ehlo)))
    if senders:
        groups.append(_sender_group(tuple(senders)))
    if recipients:
        groups.append(_recipient_group(tuple(recipients)))
    return _all_of(tuple(groups))


def _ehlo_group(tests: tuple[_TextMatcher, ...]) -> _FactsMatcher:
    def match(facts: EventFacts) -> bool:
        name = facts.ehlo
        if not name:
            return False
        domain = _canonical_domain(name)
        if not domain:
            return False
        for test in tests:  # noqa: SIM110 - a loop avoids a generator on the hot path
            if test(domain):
                return True
        return False

    return match


def _sender_group(tests: tuple[Callable[[_Address], bool], ...]) -> _FactsMatcher:
    def match(facts: EventFacts) -> bool:
        sender = facts.mail_from
        if sender is None:
            return False
        address = _canonical_address(sender)
        for test in tests:  # noqa: SIM110 - a loop avoids a generator on the hot path
            if test(address):
                return True
        return False

    return match


def _recipient_group(tests: tuple[Callable[[_Address], bool], ...]) -> _FactsMatcher:
    def match(facts: EventFacts) -> bool:
        for recipient in facts.rcpt_to:
            address = _canonical_address(recipient)
            for test in tests:
                if test(address):
                    return True
        return False

    return match


def _all_of(groups: tuple[_FactsMatcher, ...]) -> _FactsMatcher:
    if len(groups) == 1:
        return groups[0]

    def match(facts: EventFacts) -> bool:
        for group in groups:  # noqa: SIM110 - a loop avoids a generator on the hot path
            if not group(facts):
                return False
        return True

    return match


_TWO_WORD_VERBS = {"mail from": ("mail", "from"), "rcpt to": ("rcpt", "to")}
_VERB = re.compile(r"[a-z0-9]+")


def _compile_protocol(conditions: tuple[Condition, ...]) -> _FactsMatcher:
    """Index the conditions by verb, so matching is one dict lookup plus the argument tests."""
    by_verb: dict[str, list[_ArgumentMatcher]] = {}
    for index, condition in enumerate(conditions):
        try:
            verb, test = _protocol_condition(condition)
        except _Invalid as exc:
            raise _Invalid(exc.reason, index) from None
        by_verb.setdefault(verb, []).append(test)
    table = {verb: _any_argument(tuple(tests)) for verb, tests in by_verb.items()}

    def match(facts: EventFacts) -> bool:
        command = facts.command
        if command is None:
            return False
        test = table.get(command.strip().lower())
        return test is not None and test(facts.argument)

    return match


def _protocol_condition(condition: Condition) -> tuple[str, _ArgumentMatcher]:
    """The verb a protocol condition selects and the test its pattern applies to the argument."""
    keyword = _normalize_keyword(condition.keyword)
    pattern = condition.pattern
    if pattern is not None and not pattern.strip():
        raise _Invalid(f"no pattern after '{keyword}='; use '{keyword}=*' for any")
    if keyword in _TWO_WORD_VERBS:
        verb, prefix = _TWO_WORD_VERBS[keyword]
        if pattern is None:
            return verb, _always
        address_matches = _compile_address(pattern, null_allowed=verb == "mail")
        return verb, _address_argument(prefix, address_matches)
    if not _VERB.fullmatch(keyword):
        raise _unknown(condition.keyword, RuleKind.PROTOCOL)
    if pattern is None:
        return keyword, _always
    if keyword in ("ehlo", "helo"):
        return keyword, _domain_argument(_compile_domain(pattern))
    return keyword, _glob_argument(_compile_glob(pattern.strip()))


def _any_argument(tests: tuple[_ArgumentMatcher, ...]) -> _ArgumentMatcher:
    if _always in tests:
        return _always
    if len(tests) == 1:
        return tests[0]

    def match(argument: str | None) -> bool:
        for test in tests:  # noqa: SIM110 - a loop avoids a generator on the hot path
            if test(argument):
                return True
        return False

    return match


def _address_argument(prefix: str, test: Callable[[_Address], bool]) -> _ArgumentMatcher:
    def match(argument: str | None) -> bool:
        if argument is None:
            return False
        address = _argument_address(argument, prefix)
        return address is not None and test(address)

    return match


def _domain_argument(test: _TextMatcher) -> _ArgumentMatcher:
    def match(argument: str | None) -> bool:
        words = argument.split(maxsplit=1) if argument else None
        if not words:
            return False
        domain = _canonical_domain(words[0])
        return bool(domain) and test(domain)

    return match


def _glob_argument(test: _TextMatcher) -> _ArgumentMatcher:
    """A command without an argument (``DATA``) is matched as an empty argument."""

    def match(argument: str | None) -> bool:
        return test("" if argument is None else argument.strip().casefold())

    return match


def _compile_nntp(conditions: tuple[Condition, ...]) -> _FactsMatcher:
    """Any group of the article matching any ``newsgroups`` pattern matches the rule."""
    tests: list[_TextMatcher] = []
    for index, condition in enumerate(conditions):
        try:
            if _normalize_keyword(condition.keyword) != "newsgroups":
                raise _unknown(condition.keyword, RuleKind.NNTP)
            pattern = _required_pattern(condition, "newsgroups=comp.lang.*")
            tests.append(_compile_glob(pattern))
        except _Invalid as exc:
            raise _Invalid(exc.reason, index) from None
    patterns = tuple(tests)

    def match(facts: EventFacts) -> bool:
        for group in facts.newsgroups:
            folded = group.strip().casefold()
            for test in patterns:
                if test(folded):
                    return True
        return False

    return match
