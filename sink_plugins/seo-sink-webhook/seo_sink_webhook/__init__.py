"""The ``webhook`` sink: POST a JSON summary of mail and news events to an HTTP(S) URL.

It handles OnArrival (also under its other name, OnTransportSubmission), MsgTrackLog, OnPost and
OnPostFinal. The summary never holds the message body unless ``include_body`` is true; a bearer
token is read from the environment variable ``token_env`` names, so it is never stored.
"""

from seo_sink_webhook._payload import summary
from seo_sink_webhook._settings import Settings, SettingsError
from seo_sink_webhook._sink import WebhookError, WebhookSink

__all__ = ["Settings", "SettingsError", "WebhookError", "WebhookSink", "summary"]
