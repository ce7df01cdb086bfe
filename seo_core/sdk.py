"""What sink authors import: ``from seo_core.sdk import hookimpl, Verdict``.

This module is the stable sink API. Importing it loads neither the servers nor the command line.

A sink is a module or a class, advertised as an entry point in the group ``seo.sinks``::

    [project.entry-points."seo.sinks"]
    tagger = "seo_sink_tagger:Tagger"

A class may set ``cacheable = False`` (a new instance for every notification instead of one per
binding), ``clsid = "{GUID}"`` (so a binding may name it by CLSID), ``properties_schema =
Schema({...})`` and a ``validate_properties(properties)`` callable that raises ``ValueError`` with
a message for SinkProperties it refuses. A module may define the same names.
"""

from seo_core.errors import SinkPropertyError
from seo_core.events.contexts import (
    CategorizeEvent,
    CommandEvent,
    DeliveryEvent,
    DnsEvent,
    EventContext,
    MessageEvent,
    MessageStatus,
    OutboundCommandEvent,
    PostEvent,
    Reply,
    ResponseEvent,
    RouterEvent,
    SessionInfo,
    SizeEvent,
    TrackEvent,
    Verdict,
)
from seo_core.events.markers import hookimpl
from seo_core.events.schema import Prop, Schema
from seo_core.metabase.records import Binding
from seo_core.properties import PropertyBag, PropertyValue

__all__ = [
    "Binding",
    "CategorizeEvent",
    "CommandEvent",
    "DeliveryEvent",
    "DnsEvent",
    "EventContext",
    "MessageEvent",
    "MessageStatus",
    "OutboundCommandEvent",
    "PostEvent",
    "Prop",
    "PropertyBag",
    "PropertyValue",
    "Reply",
    "ResponseEvent",
    "RouterEvent",
    "Schema",
    "SessionInfo",
    "SinkPropertyError",
    "SizeEvent",
    "TrackEvent",
    "Verdict",
    "hookimpl",
]
