"""Mail in, mail delivered: the whole path through the real server."""

from __future__ import annotations

import smtplib
from pathlib import Path

from seo_core.testing import RunningSmtp
from tests.smtp.conftest import delivered

MESSAGE = (
    b"From: Alice <alice@example.net>\r\n"
    b"To: Bob <bob@example.com>\r\n"
    b"Subject: hello\r\n"
    b"\r\n"
    b"Hi Bob,\r\n"
    b"..a line that starts with a dot\r\n"
    b"bye\r\n"
)


def test_a_message_is_accepted_and_delivered(smtp: RunningSmtp, mailboxes: Path) -> None:
    with smtplib.SMTP("127.0.0.1", smtp.port) as client:
        refused = client.sendmail("alice@example.net", ["bob@example.com"], MESSAGE)
    assert refused == {}
    smtp.wait_idle()
    (stored,) = delivered(mailboxes, "bob@example.com")
    assert stored == MESSAGE
