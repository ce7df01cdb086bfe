"""The ``alias`` sink: rewrite or expand recipients from a table, in OnCategorize.

The ``aliases`` SinkProperty maps an address (``postmaster@example.com``), a local part in every
domain (``postmaster``) or a whole domain (``@example.com``, the catch-all, used when no other key
matches a recipient of that domain) to an address or a list of addresses. Keys match
case-insensitively; expansion is recursive, up to :data:`MAX_DEPTH` levels, and loops end.
"""

from seo_sink_alias._sink import AliasSink
from seo_sink_alias._table import MAX_DEPTH, AliasError, AliasTable

__all__ = ["MAX_DEPTH", "AliasError", "AliasSink", "AliasTable"]
