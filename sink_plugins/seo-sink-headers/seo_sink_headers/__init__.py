"""The ``headers`` sink: add, set or remove header fields of each message on OnArrival.

Everything the sink is not told to change stays byte for byte: the other header lines keep their
order and folding, and the body is not touched (see :func:`edit_headers`).
"""

from seo_sink_headers._sink import HeadersSink, edit_headers

__all__ = ["HeadersSink", "edit_headers"]
