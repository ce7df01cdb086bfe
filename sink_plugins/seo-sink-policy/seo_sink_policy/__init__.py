"""The ``policy`` sink: refusals without code, chosen by a binding's rule and properties.

Bound to OnInboundCommand it answers the commands its rule selects with a configured reply (a
sender, a HELO name, RCPT commands past a count); bound to OnArrival it sends the messages it
selects (by size, by header patterns) to badmail or discards them; bound to OnPostEarly or
OnPost of a news source it refuses the articles its rule selects (a moderated group).
"""

from seo_sink_policy._sink import PolicySink, Settings, glob_match, header_values, settings

__all__ = ["PolicySink", "Settings", "glob_match", "header_values", "settings"]
