"""The installed ``log`` sink, bound to OnPost of a real NNTP server."""

from __future__ import annotations

import json
from pathlib import Path

from tests.nntp.conftest import Bind, Serve, article, post


def test_binding_the_log_sink_to_on_post_writes_the_newsgroups(
    bind: Bind, serve: Serve, tmp_path: Path
) -> None:
    audit = tmp_path / "audit.jsonl"
    bind("OnPost", "log", name="Audit posts", sink_properties={"File": str(audit)})
    with serve() as news:
        reply = post(news.port, article(groups="local.test, local.announce", body=b"secret\r\n"))
    (line,) = audit.read_text().splitlines()
    record = json.loads(line)
    assert {k: record[k] for k in ("source", "event", "binding", "message_id", "newsgroups")} == {
        "source": "nntp/1",
        "event": "OnPost",
        "binding": "Audit posts",
        "message_id": reply.split()[-1],
        "newsgroups": ["local.test", "local.announce"],
    }
    assert "secret" not in line
