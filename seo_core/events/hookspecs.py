"""The hook specifications: one documented stub per event.

A sink implements any of these by name (marked with :data:`seo_core.sdk.hookimpl`) and may
accept any subset of the arguments. Every hook receives:

- ``event``: the context of this event (see :mod:`seo_core.events.contexts`);
- ``sink_properties``: the binding's SinkProperties, read-only, case-insensitive keys, with
  the sink's ``properties_schema`` defaults for those the binding does not set;
- ``source_properties``: the binding's SourceProperties (``Rule``, ``Priority``), read-only;
- ``binding``: the binding being notified, read-only (``id``, ``display_name``, ``source``,
  ``event``, ``sink_class``, ``fire_count``, ``max_firings``).

A hook returns ``None`` or :attr:`Verdict.CONTINUE` to let the next sink run, or
:attr:`Verdict.SKIP_REMAINING` so that no lower-priority sink is notified for this event. It may
be ``async def``; the dispatcher awaits it before the next sink runs.

Each hookspec has a section in docs/events.md and a test naming it; tests/test_docs.py fails when
either is missing, so a new event cannot ship undocumented or untested.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from seo_core.events.markers import hookspec

if TYPE_CHECKING:
    from seo_core.events.contexts import (
        CategorizeEvent,
        CommandEvent,
        DeliveryEvent,
        DnsEvent,
        MessageEvent,
        OutboundCommandEvent,
        PostEvent,
        ResponseEvent,
        RouterEvent,
        SizeEvent,
        TrackEvent,
        Verdict,
    )
    from seo_core.metabase.records import Binding
    from seo_core.properties import PropertyBag


@hookspec
def smtp_on_inbound_command(
    event: CommandEvent,
    sink_properties: PropertyBag,
    source_properties: PropertyBag,
    binding: Binding,
) -> Verdict | None:
    """OnInboundCommand: a client sent a command, before the server's own handling. Call
    ``event.reply(code, text)`` to answer instead of the server (4xx/5xx refuse it; an answer to
    an unknown verb implements it), ``event.drop_session()`` to close the connection, or extend
    ``event.ehlo_keywords`` on EHLO.
    """


@hookspec
def smtp_on_server_response(
    event: ResponseEvent,
    sink_properties: PropertyBag,
    source_properties: PropertyBag,
    binding: Binding,
) -> Verdict | None:
    """OnServerResponse: the server is about to send ``event.response`` for ``event.command``.
    ``event.reply(code, text)`` rewrites it.
    """


@hookspec
def smtp_on_arrival(
    event: MessageEvent,
    sink_properties: PropertyBag,
    source_properties: PropertyBag,
    binding: Binding,
) -> Verdict | None:
    """OnArrival: a message was received completely and is safely in the spool. The sink may edit
    ``event.message`` and ``event.recipients`` and set ``event.status`` (``abort()``,
    ``badmail(reason)``).
    """


@hookspec
def smtp_on_transport_submission(
    event: MessageEvent,
    sink_properties: PropertyBag,
    source_properties: PropertyBag,
    binding: Binding,
) -> Verdict | None:
    """OnArrival: the same event as :func:`smtp_on_arrival`, under the original's other name;
    bindings to either name share one list and one order.
    """


@hookspec
def smtp_on_pre_categorize(
    event: MessageEvent,
    sink_properties: PropertyBag,
    source_properties: PropertyBag,
    binding: Binding,
) -> Verdict | None:
    """OnPreCategorize: before the recipients of a message are resolved. Inspect it or set its
    status.
    """


@hookspec
def smtp_on_categorize(
    event: CategorizeEvent,
    sink_properties: PropertyBag,
    source_properties: PropertyBag,
    binding: Binding,
) -> Verdict | None:
    """OnCategorize: once per recipient, to resolve ``event.recipient``: ``rewrite(*addresses)``
    expands or replaces it, ``mark_unknown()`` refuses it.
    """


@hookspec
def smtp_on_post_categorize(
    event: MessageEvent,
    sink_properties: PropertyBag,
    source_properties: PropertyBag,
    binding: Binding,
) -> Verdict | None:
    """OnPostCategorize: after the recipients were resolved; ``event.recipients`` is the resolved
    list, editable.
    """


@hookspec
def smtp_on_transport_router(
    event: RouterEvent,
    sink_properties: PropertyBag,
    source_properties: PropertyBag,
    binding: Binding,
) -> Verdict | None:
    """OnTransportRouter: per recipient domain: choose the next hop with ``relay_to(host, port)``
    or ``deliver_locally()``.
    """


@hookspec
def smtp_store_driver(
    event: DeliveryEvent,
    sink_properties: PropertyBag,
    source_properties: PropertyBag,
    binding: Binding,
) -> Verdict | None:
    """StoreDriver: deliver the message to one local ``event.recipient``: store it and call
    ``delivered(where)``, or ``fail(reason)`` (or raise) so that the server retries and finally
    keeps it as badmail.
    """


@hookspec
def smtp_max_msg_size(
    event: SizeEvent,
    sink_properties: PropertyBag,
    source_properties: PropertyBag,
    binding: Binding,
) -> Verdict | None:
    """MaxMsgSize: a message is over the size limit; ``event.allow()`` lets it through."""


@hookspec
def smtp_msg_track_log(
    event: TrackEvent,
    sink_properties: PropertyBag,
    source_properties: PropertyBag,
    binding: Binding,
) -> Verdict | None:
    """MsgTrackLog: each tracking step of a message (``event.step``: received, categorized,
    delivered, failed). Record it; the return value is ignored.
    """


@hookspec
def smtp_on_session_start(
    event: OutboundCommandEvent,
    sink_properties: PropertyBag,
    source_properties: PropertyBag,
    binding: Binding,
) -> Verdict | None:
    """OnSessionStart: outbound relay: before EHLO is sent. ``set_command`` rewrites it, ``stop()``
    stops the step.
    """


@hookspec
def smtp_on_message_start(
    event: OutboundCommandEvent,
    sink_properties: PropertyBag,
    source_properties: PropertyBag,
    binding: Binding,
) -> Verdict | None:
    """OnMessageStart: outbound relay: before MAIL FROM is sent."""


@hookspec
def smtp_on_per_recipient(
    event: OutboundCommandEvent,
    sink_properties: PropertyBag,
    source_properties: PropertyBag,
    binding: Binding,
) -> Verdict | None:
    """OnPerRecipient: outbound relay: before each RCPT TO is sent."""


@hookspec
def smtp_on_before_data(
    event: OutboundCommandEvent,
    sink_properties: PropertyBag,
    source_properties: PropertyBag,
    binding: Binding,
) -> Verdict | None:
    """OnBeforeData: outbound relay: before DATA is sent."""


@hookspec
def smtp_on_session_end(
    event: OutboundCommandEvent,
    sink_properties: PropertyBag,
    source_properties: PropertyBag,
    binding: Binding,
) -> Verdict | None:
    """OnSessionEnd: outbound relay: before QUIT is sent."""


@hookspec
def smtp_dns_resolver(
    event: DnsEvent,
    sink_properties: PropertyBag,
    source_properties: PropertyBag,
    binding: Binding,
) -> Verdict | None:
    """DnsResolver: the relay needs the mail hosts of ``event.domain``; append ``(host, port)``
    pairs to ``event.hosts``.
    """


@hookspec
def nntp_on_post_early(
    event: PostEvent,
    sink_properties: PropertyBag,
    source_properties: PropertyBag,
    binding: Binding,
) -> Verdict | None:
    """OnPostEarly: the headers of a posted article are in (``event.message`` has no body yet).
    ``refuse(reason)`` rejects the post; ``event.newsgroups`` may be changed.
    """


@hookspec
def nntp_on_post(
    event: PostEvent,
    sink_properties: PropertyBag,
    source_properties: PropertyBag,
    binding: Binding,
) -> Verdict | None:
    """OnPost: the whole article is in. ``refuse(reason)`` rejects it with a 441 reply carrying the
    reason; ``event.newsgroups`` decides which groups it is filed in.
    """


@hookspec
def nntp_on_post_final(
    event: PostEvent,
    sink_properties: PropertyBag,
    source_properties: PropertyBag,
    binding: Binding,
) -> Verdict | None:
    """OnPostFinal: the article was stored. Observe only: changes are ignored."""
