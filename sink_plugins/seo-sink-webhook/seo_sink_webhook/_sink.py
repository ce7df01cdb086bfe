"""The ``webhook`` sink class: POST a JSON summary of an event, with a timeout and retries."""

from __future__ import annotations

import asyncio
import functools
import http.client
import os
import urllib.error
import urllib.request
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version

from seo_core.sdk import (
    Binding,
    MessageEvent,
    PostEvent,
    PropertyBag,
    PropertyValue,
    TrackEvent,
    hookimpl,
)
from seo_sink_webhook._payload import encode, summary
from seo_sink_webhook._settings import SCHEMA, Settings, SettingsError, redact

RESPONSE_LIMIT = 64 * 1024
"""Bytes of a response body read (and thrown away) so the connection ends cleanly."""


class WebhookError(RuntimeError):
    """The webhook could not be delivered; the notification fails with this message."""


class _Retry(Exception):
    """A failure worth another attempt: network error, timeout, 429 or 5xx."""


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """Refuse redirects: following one would send the event, and the token, somewhere else."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


class WebhookSink:
    """POSTs a JSON summary of OnArrival, MsgTrackLog, OnPost and OnPostFinal events.

    The request runs in a worker thread (``asyncio.to_thread``), so the server's event loop
    keeps serving other sessions meanwhile. Each attempt is bounded by ``timeout``; a network
    error, a timeout, 429 or a 5xx reply is retried up to ``retries`` times, waiting
    ``retry_delay`` seconds, doubled each time. Any other reply that is not 2xx, or the last
    failed attempt, fails the notification with a :class:`WebhookError` the dispatcher logs.
    """

    properties_schema = SCHEMA

    @staticmethod
    def validate_properties(properties: Mapping[str, PropertyValue]) -> None:
        """Check the properties as the sink will read them; ``url`` may come from the env."""
        bag = PropertyBag(properties)
        values = bag.to_dict()
        for name in ("url", "token_env", "headers"):
            if name not in bag:
                continue
            written = next(key for key in values if key.casefold() == name)
            value = values[written]
            if not (isinstance(value, dict) and list(value) == ["env"]):
                continue
            if name == "url":
                # Resolved only when the sink is called; check the rest with a stand-in.
                values[written] = "https://url.from.environment.invalid/"
            elif name == "token_env":
                raise SettingsError(
                    'token_env: is the name of the variable itself; write token_env = "NAME"'
                )
            else:
                raise SettingsError(
                    "headers: a table whose only key is 'env' reads as an environment "
                    "reference; headers cannot come from the environment"
                )
        Settings.read(values)

    @hookimpl
    async def smtp_on_arrival(
        self, event: MessageEvent, sink_properties: PropertyBag, binding: Binding
    ) -> None:
        await post(event, sink_properties, binding)

    @hookimpl
    async def smtp_on_transport_submission(
        self, event: MessageEvent, sink_properties: PropertyBag, binding: Binding
    ) -> None:
        await post(event, sink_properties, binding)

    @hookimpl
    async def smtp_msg_track_log(
        self, event: TrackEvent, sink_properties: PropertyBag, binding: Binding
    ) -> None:
        await post(event, sink_properties, binding)

    @hookimpl
    async def nntp_on_post(
        self, event: PostEvent, sink_properties: PropertyBag, binding: Binding
    ) -> None:
        await post(event, sink_properties, binding)

    @hookimpl
    async def nntp_on_post_final(
        self, event: PostEvent, sink_properties: PropertyBag, binding: Binding
    ) -> None:
        await post(event, sink_properties, binding)


async def post(
    event: MessageEvent | TrackEvent | PostEvent, sink_properties: PropertyBag, binding: Binding
) -> None:
    """Send the summary of ``event``; raise :class:`WebhookError` when it cannot be delivered."""
    try:
        settings = Settings.read(sink_properties)
    except SettingsError as exc:
        raise WebhookError(f"webhook misconfigured: {exc}") from None
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "User-Agent": _user_agent(),
        **dict(settings.headers),
    }
    if settings.token_env is not None:
        token = os.environ.get(settings.token_env)
        if not token:
            raise WebhookError(
                f"token_env: environment variable {settings.token_env} is not set or empty, "
                "so there is no token to send"
            )
        headers["Authorization"] = f"Bearer {token}"
    body = encode(summary(event, binding, include_body=settings.include_body))
    where = redact(settings.url)
    attempts = settings.retries + 1
    problem = ""
    for attempt in range(attempts):
        if attempt:
            await asyncio.sleep(settings.retry_delay * 2 ** (attempt - 1))
        try:
            # The thread cannot be stopped; asyncio.timeout bounds the wait, and the socket
            # timeout ends the thread soon after.
            async with asyncio.timeout(settings.timeout):
                await asyncio.to_thread(_send, settings.url, body, headers, settings.timeout)
        except TimeoutError:
            problem = f"no answer within {settings.timeout:g}s"
        except _Retry as exc:
            problem = str(exc)
        else:
            return
    tries = "1 attempt" if attempts == 1 else f"{attempts} attempts"
    raise WebhookError(f"POST {where} failed after {tries}: {problem}")


def _send(url: str, body: bytes, headers: dict[str, str], timeout: float) -> None:
    """One POST, in a worker thread. Raises :class:`_Retry` or :class:`WebhookError`."""
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with _opener().open(request, timeout=timeout) as response:
            response.read(RESPONSE_LIMIT)
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 429 or exc.code >= 500:
            raise _Retry(f"HTTP {exc.code} {exc.reason}") from None
        raise WebhookError(f"POST {redact(url)} refused: HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise _Retry(f"{type(exc.reason).__name__}: {exc.reason}") from None
    except (OSError, http.client.HTTPException) as exc:
        raise _Retry(f"{type(exc).__name__}: {exc}") from None


@functools.cache
def _opener() -> urllib.request.OpenerDirector:
    return urllib.request.build_opener(_NoRedirects())


@functools.cache
def _user_agent() -> str:
    try:
        return f"seo-sink-webhook/{version('seo-sink-webhook')}"
    except PackageNotFoundError:
        return "seo-sink-webhook"
