"""The ``wordfilter`` sink: keeps aside mail whose Subject contains a listed word.

This is the sink that seo's tutorial (docs/tutorial.md) writes, step by step; the tutorial shows
the parts of this file between its ``--8<--`` markers, so the two cannot drift apart.
"""

# --8<-- [start:imports]
from __future__ import annotations

import re

import structlog

from seo_core.sdk import Binding, MessageEvent, Prop, PropertyBag, Schema, Verdict, hookimpl

__all__ = ["WordFilter"]

log = structlog.get_logger("seo_sink_wordfilter")
# --8<-- [end:imports]


# --8<-- [start:class]
class WordFilter:
    """Keeps aside (badmail) the mail whose Subject holds one of ``Words``; tags the rest.

    seo makes one instance per binding and keeps it while the binding does not change, so the
    pattern is compiled once per binding, on its first message.
    """

    properties_schema = Schema(
        {
            "Words": Prop(list, required=True, help="words that keep a message aside"),
            "Header": Prop(str, default="X-Wordfilter", help="header added to mail let through"),
        }
    )

    @staticmethod
    def validate_properties(properties: PropertyBag) -> None:
        """What a schema cannot say: Words is a non-empty list of non-empty strings."""
        words = properties.get("Words")
        if not isinstance(words, list) or not words:
            raise ValueError("Words: give at least one word")
        if not all(isinstance(word, str) and word.strip() for word in words):
            raise ValueError("Words: every word is a non-empty string")

    def __init__(self) -> None:
        self._pattern: re.Pattern[str] | None = None
        # --8<-- [end:class]

    # --8<-- [start:hook]
    @hookimpl
    def smtp_on_arrival(
        self, event: MessageEvent, sink_properties: PropertyBag, binding: Binding
    ) -> Verdict:
        if self._pattern is None:
            words = sink_properties["Words"]
            assert isinstance(words, list)  # validate_properties saw to it
            either = "|".join(re.escape(str(word).strip()) for word in words)
            self._pattern = re.compile(rf"\b(?:{either})\b", re.IGNORECASE)
        subject = str(event.message.get("Subject", ""))
        found = self._pattern.search(subject)
        if found is None:
            header = str(sink_properties["Header"])  # its default when the binding has none
            del event.message[header]  # one the client sent itself is a forgery
            event.message[header] = "passed"
            return Verdict.CONTINUE
        word = found.group(0).lower()
        event.badmail(f"the subject contains {word!r}")
        log.info(
            "message_kept_aside", binding_id=binding.id, message_id=event.message_id, word=word
        )
        return Verdict.SKIP_REMAINING
        # --8<-- [end:hook]
