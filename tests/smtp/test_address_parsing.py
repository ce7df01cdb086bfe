"""The short cut for plain addresses gives what aiosmtpd's own parser gives, or steps aside."""

from __future__ import annotations

import itertools
from email._header_value_parser import get_angle_addr

import pytest

from seo_core.sources.smtp.protocol import plain_address

LOCALS = ["a", "bob", "A.B", "first.last", "x+tag", "o'neil", "u_1-2", "{x}", "a!#$%&*=?^`|~"]
DOMAINS = ["example.com", "EXAMPLE.NET", "mx-1.example.org", "localhost", "xn--bcher-kva.example"]
PARAMETERS = ["", " ", " SIZE=100", "  BODY=8BITMIME SMTPUTF8", "\tSIZE=1", "SIZE=5", " X=1 "]


@pytest.mark.parametrize(
    "arg",
    [
        f"<{local}@{domain}>{params}"
        for local, domain, params in itertools.product(LOCALS, DOMAINS, PARAMETERS)
    ],
)
def test_a_plain_address_parses_as_aiosmtpd_parses_it(arg: str) -> None:
    address, rest = get_angle_addr(arg)
    assert plain_address(arg) == (address.addr_spec, rest)


@pytest.mark.parametrize(
    "arg",
    [
        "<>",
        '<"odd user"@example.com>',
        "<@relay.example.net:user@example.com>",
        "<user@[192.0.2.1]>",
        "<jürgen@example.com>",
        "<a@bücher.example>",
        "<a@b.c>(comment) SIZE=1",
        " <a@example.com>",
        "a@example.com",
        "<a..b@example.com>",
        "<.a@example.com>",
        "<a@example..com>",
        "<a@example.com",
        "<a b@example.com>",
    ],
)
def test_every_other_form_is_left_to_aiosmtpd(arg: str) -> None:
    assert plain_address(arg) is None
