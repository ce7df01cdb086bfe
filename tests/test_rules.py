"""Table-driven tests of the ``Rule`` grammar and matcher (DESIGN.md section 4)."""

from __future__ import annotations

from typing import NamedTuple

import pytest

from seo_core.catalog import RuleKind
from seo_core.errors import RuleError
from seo_core.rules import Condition, EventFacts, Rule, matches, parse_rule, rule_warnings

T = RuleKind.TRANSPORT
P = RuleKind.PROTOCOL
N = RuleKind.NNTP
X = RuleKind.NONE


def sender(address: str | None) -> EventFacts:
    return EventFacts(mail_from=address)


def rcpt(*addresses: str) -> EventFacts:
    return EventFacts(rcpt_to=addresses)


def command(verb: str | None, argument: str | None = None) -> EventFacts:
    return EventFacts(command=verb, argument=argument)


def groups(*names: str) -> EventFacts:
    return EventFacts(newsgroups=names)


class Match(NamedTuple):
    id: str
    rule: str | None
    kind: RuleKind
    facts: EventFacts
    expected: bool


MATCHES = [
    # empty rules match everything
    Match("none-rule", None, T, EventFacts(), True),
    Match("blank-rule", "  ", P, command("DATA"), True),
    Match("only-semicolons", " ; ;", N, groups(), True),
    Match("none-kind-empty", "", X, EventFacts(), True),
    # case-insensitive domains and names
    Match("domain-case", "mail from=*@Example.COM", T, sender("user1@example.com"), True),
    Match("domain-case-other", "mail from=*@Example.COM", T, sender("user1@example.org"), False),
    Match("name-case", "mail from=USER1@example.com", T, sender("user1@EXAMPLE.com"), True),
    # documented suffix rule: *example.com includes example.com and notexample.com
    Match("suffix-self", "mail from=*@*example.com", T, sender("a@example.com"), True),
    Match("suffix-sub", "mail from=*@*example.com", T, sender("a@mx.example.com"), True),
    Match("suffix-not", "mail from=*@*example.com", T, sender("a@notexample.com"), True),
    Match("suffix-other", "mail from=*@*example.com", T, sender("a@example.org"), False),
    Match("dot-suffix-self", "rcpt to=*@*.example.com", T, rcpt("a@example.com"), False),
    Match("dot-suffix-sub", "rcpt to=*@*.example.com", T, rcpt("a@b.example.com"), True),
    Match("dot-suffix-not", "rcpt to=*@*.example.com", T, rcpt("a@notexample.com"), False),
    Match("domain-trailing-dot", "rcpt to=*@example.com.", T, rcpt("a@EXAMPLE.com."), True),
    # only * is special
    Match(
        "brackets-literal", "rcpt to=list[bot]@example.com", T, rcpt("list[bot]@example.com"), True
    ),
    Match(
        "brackets-no-class", "rcpt to=list[bot]@example.com", T, rcpt("listb@example.com"), False
    ),
    Match("question-literal", "rcpt to=user?@example.com", T, rcpt("user?@example.com"), True),
    Match("question-no-wild", "rcpt to=user?@example.com", T, rcpt("user1@example.com"), False),
    # IDNA: one canonical form for domains, in patterns and in facts
    Match("idna-u-pattern", "rcpt to=*@bücher.example", T, rcpt("x@xn--bcher-kva.example"), True),
    Match("idna-a-pattern", "rcpt to=*@xn--bcher-kva.example", T, rcpt("x@bücher.example"), True),
    Match("idna-upper-dot", "rcpt to=*@BÜCHER.example.", T, rcpt("x@xn--BCHER-kva.example"), True),
    Match(
        "idna-suffix", "rcpt to=*@*.bücher.example", T, rcpt("x@shop.xn--bcher-kva.example"), True
    ),
    Match("idna-other", "rcpt to=*@bücher.example", T, rcpt("x@bucher.example"), False),
    Match("idna-ehlo", "ehlo=*.bücher.example", T, EventFacts(ehlo="MX.Bücher.Example"), True),
    # the null sender
    Match("null-star", "mail from=*", T, sender(""), True),
    Match("null-star-brackets", "mail from=*", T, sender("<>"), True),
    Match("null-pattern", "mail from=<>", T, sender(""), True),
    Match("null-pattern-brackets", "mail from=<>", T, sender("<>"), True),
    Match("null-pattern-real", "mail from=<>", T, sender("a@example.com"), False),
    Match("null-anyaddr", "mail from=*@*", T, sender(""), False),
    Match("anyaddr-real", "mail from=*@*", T, sender("a@example.com"), True),
    Match("null-name", "mail from=*x*", T, sender(""), False),
    Match("missing-sender", "mail from=*", T, sender(None), False),
    Match("star-or-null", "mail from=<>;mail from=*@example.com", T, sender(""), True),
    # same keyword OR-ed, any recipient
    Match(
        "or-b",
        "rcpt to=*@a.example;rcpt to=*@b.example",
        T,
        rcpt("x@c.example", "y@b.example"),
        True,
    ),
    Match("or-c", "rcpt to=*@a.example;rcpt to=*@b.example", T, rcpt("x@c.example"), False),
    Match("or-none", "rcpt to=*@a.example;rcpt to=*@b.example", T, rcpt(), False),
    # different keywords AND-ed
    Match(
        "and-both",
        "ehlo=*.example.net;mail from=*@example.com",
        T,
        EventFacts(ehlo="mx.example.net", mail_from="u@example.com"),
        True,
    ),
    Match(
        "and-ehlo-only",
        "ehlo=*.example.net;mail from=*@example.com",
        T,
        EventFacts(ehlo="mx.example.net", mail_from="u@example.org"),
        False,
    ),
    Match(
        "and-from-only",
        "ehlo=*.example.net;mail from=*@example.com",
        T,
        EventFacts(ehlo="mx.example.org", mail_from="u@example.com"),
        False,
    ),
    Match("and-neither", "ehlo=*.example.net;mail from=*@example.com", T, EventFacts(), False),
    Match(
        "and-three",
        "ehlo=*;mail from=*;rcpt to=*@b.example",
        T,
        EventFacts(ehlo="h.example", mail_from="", rcpt_to=("a@b.example",)),
        True,
    ),
    # ehlo / helo
    Match("helo-alias", "helo=mx.example.net", T, EventFacts(ehlo="MX.example.net"), True),
    Match("ehlo-other", "ehlo=mx.example.net", T, EventFacts(ehlo="mx2.example.net"), False),
    Match("ehlo-missing", "ehlo=*", T, EventFacts(), False),
    Match("ehlo-empty", "ehlo=*", T, EventFacts(ehlo=""), False),
    Match("ehlo-literal", "ehlo=[192.0.2.1]", T, EventFacts(ehlo="[192.0.2.1]"), True),
    # white space and case in the rule text
    Match("spacing", "  MAIL   FROM = *@x.example ; ", T, sender("u@X.Example"), True),
    Match("spacing-tab", "Rcpt\tTo\t=\tA@x.example", T, rcpt("a@x.example"), True),
    # name patterns: exact, prefix, suffix, substring, no domain
    Match("name-exact", "rcpt to=user1@example.com", T, rcpt("user1@example.com"), True),
    Match("name-exact-longer", "rcpt to=user1@example.com", T, rcpt("user12@example.com"), False),
    Match("name-prefix", "rcpt to=somename*", T, rcpt("somename.x@any.example"), True),
    Match("name-prefix-miss", "rcpt to=somename*", T, rcpt("xsomename@any.example"), False),
    Match("name-suffix", "rcpt to=*admin@example.com", T, rcpt("webadmin@example.com"), True),
    Match("name-suffix-miss", "rcpt to=*admin@example.com", T, rcpt("admin2@example.com"), False),
    Match("name-substring", "rcpt to=*post*", T, rcpt("mypostbox@example.com"), True),
    Match("name-substring-miss", "rcpt to=*post*", T, rcpt("box@post.example"), False),
    Match("name-no-domain-fact", "rcpt to=postmaster", T, rcpt("Postmaster"), True),
    Match("anyaddr-no-domain-fact", "rcpt to=*@*", T, rcpt("postmaster"), False),
    Match(
        "person",
        "rcpt to=person@example.com",
        T,
        rcpt("other@example.com", "person@example.com"),
        True,
    ),
    Match(
        "equals-in-name", "mail from=srs0=*@example.com", T, sender("SRS0=ab=cd@example.com"), True
    ),
    # address forms in facts
    Match(
        "source-route", "rcpt to=user@example.com", T, rcpt("@relay.example:user@example.com"), True
    ),
    Match(
        "source-route-relay",
        "rcpt to=*@relay.example",
        T,
        rcpt("@relay.example:u@example.com"),
        False,
    ),
    Match(
        "quoted-local", 'rcpt to="odd user"@example.com', T, rcpt('"Odd User"@example.com'), True
    ),
    Match("quoted-at-domain", "rcpt to=*@example.com", T, rcpt('"a@b"@example.com'), True),
    Match("quoted-at-not-domain", "rcpt to=*@b", T, rcpt('"a@b"@example.com'), False),
    Match("brackets-in-fact", "mail from=u@example.com", T, sender("<u@example.com>"), True),
    Match("brackets-in-pattern", "mail from=<u@example.com>", T, sender("u@example.com"), True),
    # protocol: bare verbs
    Match("bare-rcpt", "RCPT", P, command("rcpt", "TO:<a@b.example>"), True),
    Match("bare-rcpt-mail", "RCPT", P, command("MAIL", "FROM:<a@b.example>"), False),
    Match("bare-rcpt-none", "RCPT", P, command(None), False),
    Match("bare-mail-from", "MAIL FROM", P, command("mail", "FROM:<>"), True),
    Match("bare-data", "data", P, command("DATA"), True),
    Match("bare-xverb", "XFOO", P, command("xfoo", "anything"), True),
    Match("ehlo-or-helo-ehlo", "EHLO;HELO", P, command("ehlo", "c.example"), True),
    Match("ehlo-or-helo-helo", "EHLO;HELO", P, command("HELO", "c.example"), True),
    Match("ehlo-or-helo-mail", "EHLO;HELO", P, command("MAIL", "FROM:<>"), False),
    Match("ehlo-not-helo", "EHLO", P, command("HELO", "c.example"), False),
    # protocol: verb=pattern
    Match(
        "proto-from",
        "mail from=*@example.com",
        P,
        command("MAIL", "FROM:<u@example.com> SIZE=100"),
        True,
    ),
    Match(
        "proto-from-space",
        "mail from=*@example.com",
        P,
        command("mail", "from: <u@Example.COM>"),
        True,
    ),
    Match(
        "proto-from-other",
        "mail from=*@example.com",
        P,
        command("MAIL", "FROM:<u@x.example>"),
        False,
    ),
    Match(
        "proto-from-on-rcpt",
        "mail from=*@example.com",
        P,
        command("RCPT", "TO:<u@example.com>"),
        False,
    ),
    Match("proto-from-noarg", "mail from=*", P, command("MAIL"), False),
    Match("proto-from-null", "mail from=<>", P, command("MAIL", "FROM:<> BODY=8BITMIME"), True),
    Match("proto-from-star-null", "mail from=*", P, command("MAIL", "FROM:<>"), True),
    Match(
        "proto-from-quoted",
        'mail from="a>b"@example.com',
        P,
        command("MAIL", 'FROM:<"a>b"@example.com> SIZE=1'),
        True,
    ),
    Match(
        "proto-from-route",
        "mail from=u@example.com",
        P,
        command("MAIL", "FROM:<@relay.example:u@example.com>"),
        True,
    ),
    Match("proto-from-unclosed", "mail from=*", P, command("MAIL", "FROM:<u@example.com"), False),
    Match(
        "proto-from-nobrackets",
        "mail from=u@example.com",
        P,
        command("MAIL", "FROM:u@example.com"),
        True,
    ),
    Match(
        "proto-rcpt",
        "rcpt to=*@example.com",
        P,
        command("RCPT", "TO:<u@Example.com> NOTIFY=NEVER"),
        True,
    ),
    Match(
        "proto-rcpt-params-apart",
        "rcpt to=*never*",
        P,
        command("RCPT", "TO:<u@x> NOTIFY=NEVER"),
        False,
    ),
    Match("proto-ehlo-domain", "ehlo=*.example.net", P, command("EHLO", "mx.Example.net"), True),
    Match("proto-ehlo-on-helo", "ehlo=*.example.net", P, command("HELO", "mx.example.net"), False),
    Match("proto-helo-domain", "helo=mx.example.net", P, command("helo", "MX.example.net"), True),
    Match("proto-glob", "auth=login*", P, command("AUTH", "LOGIN dXNlcg=="), True),
    Match("proto-glob-miss", "auth=login*", P, command("AUTH", "PLAIN"), False),
    Match("proto-glob-literal", "xfoo=a?b[c]*", P, command("XFOO", "A?B[C] more"), True),
    Match("proto-glob-empty-arg", "data=*", P, command("DATA"), True),
    Match(
        "proto-bare-or-pattern", "MAIL;mail from=*@x.example", P, command("MAIL", "FROM:<>"), True
    ),
    Match("proto-empty-facts", "RCPT", P, EventFacts(), False),
    # news
    Match("news-local", "newsgroups=local.*", N, groups("comp.lang", "local.test"), True),
    Match("news-local-miss", "newsgroups=local.*", N, groups("comp.lang"), False),
    Match("news-none", "newsgroups=*", N, groups(), False),
    Match("news-any", "newsgroups=*", N, groups("alt.test"), True),
    Match("news-case", "NEWSGROUPS=LOCAL.*", N, groups("Local.Chat"), True),
    Match("news-inner-star", "newsgroups=comp.*.python", N, groups("comp.lang.python"), True),
    Match("news-inner-star-miss", "newsgroups=comp.*.python", N, groups("comp.python.x"), False),
    Match("news-two-stars", "newsgroups=*lang*py*", N, groups("comp.lang.python"), True),
    Match("news-question-literal", "newsgroups=a?b", N, groups("axb"), False),
    Match("news-or", "newsgroups=a.*;newsgroups=b.*", N, groups("b.x"), True),
]


@pytest.mark.parametrize("case", MATCHES, ids=[case.id for case in MATCHES])
def test_matches(case: Match) -> None:
    rule = parse_rule(case.rule, case.kind)
    assert rule.matches(case.facts) is case.expected
    assert matches(rule, case.facts) is case.expected


class Failure(NamedTuple):
    id: str
    rule: str
    kind: RuleKind
    mentions: tuple[str, ...]


FAILURES = [
    Failure("unknown-keyword", "foo=bar", T, ("'foo'", "mail from", "rcpt to", "ehlo")),
    Failure("unknown-second", "mail from=*; bogus=1", T, ("bogus", "condition 2", "column 14")),
    Failure("from-no-pattern", "mail from", T, ("mail from", "needs a pattern")),
    Failure("ehlo-no-pattern", "helo", T, ("ehlo", "needs a pattern")),
    Failure("empty-pattern", "mail from=", T, ("mail from=",)),
    Failure("empty-pattern-space", "rcpt to =  ;", T, ("rcpt to",)),
    Failure("inner-star-name", "rcpt to=a*b@example.com", T, ("a*b",)),
    Failure("double-star-name", "rcpt to=**", T, ("**",)),
    Failure("inner-star-domain", "rcpt to=*@exa*mple.com", T, ("exa*mple.com",)),
    Failure("trailing-star-domain", "rcpt to=*@example.*", T, ("example.*",)),
    Failure("no-name", "rcpt to=@example.com", T, ("@example.com",)),
    Failure("no-domain", "rcpt to=user@", T, ("user@",)),
    Failure("ehlo-address", "ehlo=user@example.com", T, ("user@example.com",)),
    Failure("null-recipient", "rcpt to=<>", T, ("<>",)),
    Failure("domain-star-dot", "mail from=*@*.", T, ("*.",)),
    Failure("none-kind", "mail from=*", X, ("mail from=*", "no Rule")),
    Failure("none-kind-bare", "EHLO", X, ("EHLO",)),
    Failure("empty-keyword", "=x", T, ("=x",)),
    Failure("empty-keyword-proto", "RCPT; = x", P, ("= x", "condition 2")),
    Failure("proto-two-words", "mail to=x", P, ("mail to",)),
    Failure("proto-bad-verb", "x-foo", P, ("x-foo",)),
    Failure("proto-ehlo-address", "ehlo=a@b", P, ("a@b",)),
    Failure("news-no-pattern", "newsgroups", N, ("newsgroups",)),
    Failure("news-unknown", "groups=x", N, ("groups",)),
    Failure("news-transport-keyword", "rcpt to=*", N, ("rcpt to",)),
]


@pytest.mark.parametrize("case", FAILURES, ids=[case.id for case in FAILURES])
def test_rule_errors(case: Failure) -> None:
    with pytest.raises(RuleError) as caught:
        parse_rule(case.rule, case.kind)
    assert caught.value.rule == case.rule
    message = str(caught.value)
    for fragment in case.mentions:
        assert fragment in message


class Warned(NamedTuple):
    id: str
    rule: str
    kind: RuleKind
    mentions: tuple[str, ...]


WARNINGS = [
    Warned(
        "from-suffix",
        "mail from=*@*example.com",
        T,
        (
            "mail from=*@*example.com",
            "notexample.com",
            "mail from=*@*.example.com;mail from=*@example.com",
        ),
    ),
    Warned("ehlo-suffix", "EHLO=*microsoft.com", T, ("ehlo=*microsoft.com", "*.microsoft.com")),
    Warned("proto-suffix", "rcpt to=a*@*example.com", P, ("rcpt to=a*@*.example.com",)),
    Warned("news-comma", "newsgroups=a.*,b.*", N, ("newsgroups=a.*,b.*", "','")),
    Warned("dot-suffix", "mail from=*@*.example.com;mail from=*@example.com", T, ()),
    Warned("exact", "rcpt to=*@example.com;ehlo=*", T, ()),
    Warned("null", "mail from=<>", T, ()),
    Warned("bare", "RCPT", P, ()),
    Warned("empty", "", T, ()),
]


@pytest.mark.parametrize("case", WARNINGS, ids=[case.id for case in WARNINGS])
def test_rule_warnings(case: Warned) -> None:
    warnings = rule_warnings(parse_rule(case.rule, case.kind))
    if not case.mentions:
        assert warnings == []
        return
    assert len(warnings) == 1
    for fragment in case.mentions:
        assert fragment in warnings[0]


class Parsed(NamedTuple):
    id: str
    rule: str | None
    kind: RuleKind
    conditions: tuple[Condition, ...]


PARSED = [
    Parsed("none", None, T, ()),
    Parsed("trailing-semicolon", "mail from=*;", T, (Condition("mail from", "*"),)),
    Parsed(
        "normalized",
        "  MAIL   FROM = *@X.example ; HELO=a.example;",
        T,
        (Condition("mail from", "*@X.example"), Condition("ehlo", "a.example")),
    ),
    Parsed(
        "protocol-keeps-helo",
        "HELO;Mail  From",
        P,
        (Condition("helo", None), Condition("mail from", None)),
    ),
    Parsed("pattern-keeps-equals", "mail from=a=b", T, (Condition("mail from", "a=b"),)),
    Parsed("news", "Newsgroups = comp.* ;", N, (Condition("newsgroups", "comp.*"),)),
]


@pytest.mark.parametrize("case", PARSED, ids=[case.id for case in PARSED])
def test_parsed_conditions(case: Parsed) -> None:
    rule = parse_rule(case.rule, case.kind)
    assert rule.conditions == case.conditions
    assert rule.is_empty is (not case.conditions)
    assert rule.text == ("" if case.rule is None else case.rule)
    assert rule.kind is case.kind


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("ehlo=*.example.net;mail from=*@example.com", T),
        ("EHLO;HELO;mail from=*@x.example", P),
        ("newsgroups=local.*", N),
        ("", X),
    ],
    ids=["transport", "protocol", "nntp", "none"],
)
def test_rules_are_pure(text: str, kind: RuleKind) -> None:
    first, second = parse_rule(text, kind), parse_rule(text, kind)
    assert first == second
    assert hash(first) == hash(second)
    rebuilt = Rule(first.text, first.kind, first.conditions)
    assert rebuilt == first
    facts = EventFacts(
        ehlo="mx.example.net", mail_from="u@example.com", command="HELO", newsgroups=("local.x",)
    )
    assert rebuilt.matches(facts) is first.matches(facts) is True
    assert "_match" not in repr(first)


def test_hand_built_rule_is_validated() -> None:
    with pytest.raises(RuleError, match="a\\*b"):
        Rule("rcpt to=a*b", T, (Condition("rcpt to", "a*b"),))
