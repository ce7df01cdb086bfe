"""The ``script`` sink class: every SMTP and NNTP hook, handed to a script's functions."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from seo_core.sdk import (
    Binding,
    CategorizeEvent,
    CommandEvent,
    DeliveryEvent,
    DnsEvent,
    MessageEvent,
    OutboundCommandEvent,
    PostEvent,
    Prop,
    PropertyBag,
    PropertyValue,
    ResponseEvent,
    RouterEvent,
    Schema,
    SizeEvent,
    TrackEvent,
    Verdict,
    hookimpl,
)
from seo_sink_script._script import Script, ScriptError, check_properties, load, stamp_of


class ScriptSink:
    """Hands each event to the function of the same name in the binding's script, if any.

    The script (SinkProperties ``ScriptName``) is loaded at the first event and loaded again
    whenever the file changes (its identity, size or times differ; one ``stat`` per event). A
    script that cannot be loaded fails the notification, and the dispatcher logs why; it is
    tried again at the next event. Its function's return value is the sink's verdict.
    """

    properties_schema = Schema(
        {
            "ScriptName": Prop(
                str,
                required=True,
                path=True,
                help="the Python file whose functions handle the events",
            ),
            "AllowedDir": Prop(
                str,
                path=True,
                help="the folder the script must lie in; default: the current working folder",
            ),
        },
        allow_unknown=True,
    )

    def __init__(self) -> None:
        self._script: Script | None = None
        self._failure: tuple[tuple[int, ...], str] | None = None
        self._lock = threading.Lock()

    @staticmethod
    def validate_properties(properties: Mapping[str, PropertyValue]) -> None:
        """Refuse a script outside AllowedDir (default: the working folder), links resolved."""
        check_properties(properties)

    def script(self, sink_properties: PropertyBag) -> Script:
        """The loaded script, loaded again if the file changed since."""
        name = sink_properties.get("ScriptName")
        allowed = sink_properties.get("AllowedDir")
        if not isinstance(name, str) or not name:
            raise ScriptError("ScriptName: is required and must name a file")
        if allowed is not None and not isinstance(allowed, str):
            raise ScriptError("AllowedDir: must name a folder")
        stamp = stamp_of(name)
        loaded = self._script
        if loaded is not None and loaded.stamp == stamp:
            return loaded
        with self._lock:
            if self._script is not None and self._script.stamp == stamp:
                return self._script
            if self._failure is not None and self._failure[0] == stamp:
                raise ScriptError(self._failure[1])
            try:
                self._script = load(name, allowed, stamp)
            except ScriptError as exc:
                self._failure = (stamp, str(exc))
                raise
            self._failure = None
            return self._script

    def run(
        self,
        names: tuple[str, ...],
        event: Any,
        sink_properties: PropertyBag,
        source_properties: PropertyBag,
        binding: Binding,
    ) -> Verdict | None:
        """Call the script's function for this event (the first of ``names`` it defines)."""
        functions = self.script(sink_properties).functions
        for name in names:
            function = functions.get(name)
            if function is not None:
                result: Verdict | None = function(
                    event, sink_properties, source_properties, binding
                )
                return result
        return None

    @hookimpl
    def smtp_on_inbound_command(
        self,
        event: CommandEvent,
        sink_properties: PropertyBag,
        source_properties: PropertyBag,
        binding: Binding,
    ) -> Verdict | None:
        return self.run(("on_inbound_command",), event, sink_properties, source_properties, binding)

    @hookimpl
    def smtp_on_server_response(
        self,
        event: ResponseEvent,
        sink_properties: PropertyBag,
        source_properties: PropertyBag,
        binding: Binding,
    ) -> Verdict | None:
        return self.run(("on_server_response",), event, sink_properties, source_properties, binding)

    @hookimpl
    def smtp_on_arrival(
        self,
        event: MessageEvent,
        sink_properties: PropertyBag,
        source_properties: PropertyBag,
        binding: Binding,
    ) -> Verdict | None:
        return self.run(
            ("on_arrival", "on_transport_submission"),
            event,
            sink_properties,
            source_properties,
            binding,
        )

    @hookimpl
    def smtp_on_transport_submission(
        self,
        event: MessageEvent,
        sink_properties: PropertyBag,
        source_properties: PropertyBag,
        binding: Binding,
    ) -> Verdict | None:
        return self.run(
            ("on_transport_submission", "on_arrival"),
            event,
            sink_properties,
            source_properties,
            binding,
        )

    @hookimpl
    def smtp_on_pre_categorize(
        self,
        event: MessageEvent,
        sink_properties: PropertyBag,
        source_properties: PropertyBag,
        binding: Binding,
    ) -> Verdict | None:
        return self.run(("on_pre_categorize",), event, sink_properties, source_properties, binding)

    @hookimpl
    def smtp_on_categorize(
        self,
        event: CategorizeEvent,
        sink_properties: PropertyBag,
        source_properties: PropertyBag,
        binding: Binding,
    ) -> Verdict | None:
        return self.run(("on_categorize",), event, sink_properties, source_properties, binding)

    @hookimpl
    def smtp_on_post_categorize(
        self,
        event: MessageEvent,
        sink_properties: PropertyBag,
        source_properties: PropertyBag,
        binding: Binding,
    ) -> Verdict | None:
        return self.run(("on_post_categorize",), event, sink_properties, source_properties, binding)

    @hookimpl
    def smtp_on_transport_router(
        self,
        event: RouterEvent,
        sink_properties: PropertyBag,
        source_properties: PropertyBag,
        binding: Binding,
    ) -> Verdict | None:
        return self.run(
            ("on_transport_router",), event, sink_properties, source_properties, binding
        )

    @hookimpl
    def smtp_store_driver(
        self,
        event: DeliveryEvent,
        sink_properties: PropertyBag,
        source_properties: PropertyBag,
        binding: Binding,
    ) -> Verdict | None:
        return self.run(("store_driver",), event, sink_properties, source_properties, binding)

    @hookimpl
    def smtp_max_msg_size(
        self,
        event: SizeEvent,
        sink_properties: PropertyBag,
        source_properties: PropertyBag,
        binding: Binding,
    ) -> Verdict | None:
        return self.run(("max_msg_size",), event, sink_properties, source_properties, binding)

    @hookimpl
    def smtp_msg_track_log(
        self,
        event: TrackEvent,
        sink_properties: PropertyBag,
        source_properties: PropertyBag,
        binding: Binding,
    ) -> Verdict | None:
        return self.run(("msg_track_log",), event, sink_properties, source_properties, binding)

    @hookimpl
    def smtp_on_session_start(
        self,
        event: OutboundCommandEvent,
        sink_properties: PropertyBag,
        source_properties: PropertyBag,
        binding: Binding,
    ) -> Verdict | None:
        return self.run(("on_session_start",), event, sink_properties, source_properties, binding)

    @hookimpl
    def smtp_on_message_start(
        self,
        event: OutboundCommandEvent,
        sink_properties: PropertyBag,
        source_properties: PropertyBag,
        binding: Binding,
    ) -> Verdict | None:
        return self.run(("on_message_start",), event, sink_properties, source_properties, binding)

    @hookimpl
    def smtp_on_per_recipient(
        self,
        event: OutboundCommandEvent,
        sink_properties: PropertyBag,
        source_properties: PropertyBag,
        binding: Binding,
    ) -> Verdict | None:
        return self.run(("on_per_recipient",), event, sink_properties, source_properties, binding)

    @hookimpl
    def smtp_on_before_data(
        self,
        event: OutboundCommandEvent,
        sink_properties: PropertyBag,
        source_properties: PropertyBag,
        binding: Binding,
    ) -> Verdict | None:
        return self.run(("on_before_data",), event, sink_properties, source_properties, binding)

    @hookimpl
    def smtp_on_session_end(
        self,
        event: OutboundCommandEvent,
        sink_properties: PropertyBag,
        source_properties: PropertyBag,
        binding: Binding,
    ) -> Verdict | None:
        return self.run(("on_session_end",), event, sink_properties, source_properties, binding)

    @hookimpl
    def smtp_dns_resolver(
        self,
        event: DnsEvent,
        sink_properties: PropertyBag,
        source_properties: PropertyBag,
        binding: Binding,
    ) -> Verdict | None:
        return self.run(("dns_resolver",), event, sink_properties, source_properties, binding)

    @hookimpl
    def nntp_on_post_early(
        self,
        event: PostEvent,
        sink_properties: PropertyBag,
        source_properties: PropertyBag,
        binding: Binding,
    ) -> Verdict | None:
        return self.run(("on_post_early",), event, sink_properties, source_properties, binding)

    @hookimpl
    def nntp_on_post(
        self,
        event: PostEvent,
        sink_properties: PropertyBag,
        source_properties: PropertyBag,
        binding: Binding,
    ) -> Verdict | None:
        return self.run(("on_post",), event, sink_properties, source_properties, binding)

    @hookimpl
    def nntp_on_post_final(
        self,
        event: PostEvent,
        sink_properties: PropertyBag,
        source_properties: PropertyBag,
        binding: Binding,
    ) -> Verdict | None:
        return self.run(("on_post_final",), event, sink_properties, source_properties, binding)
