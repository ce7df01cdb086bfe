"""The ``maildir`` sink: StoreDriver delivery into one Maildir folder per local recipient.

Layout under the ``root`` SinkProperty::

    <root>/<domain>/<local part>/tmp/   files being written (never read by mail clients)
    <root>/<domain>/<local part>/new/   delivered, not yet seen
    <root>/<domain>/<local part>/cur/   seen (moved there by the reader)

The domain is lower case with IDNA A-labels, the local part lower case; anything unsafe in a
folder name is percent-encoded, so no recipient can name a folder outside ``root``
(see :func:`mailbox_path`). Messages are written as received, with LF line ends.
"""

from seo_sink_maildir._folders import RecipientError, mailbox_path
from seo_sink_maildir._sink import MaildirSink, message_bytes

__all__ = ["MaildirSink", "RecipientError", "mailbox_path", "message_bytes"]
