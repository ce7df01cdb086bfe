"""The ``archive`` sink: a copy of each message (OnArrival) or article (OnPostFinal) in a folder.

The property names are those of the original SDK's archive sample: ``ArchiveLocation`` (the
folder) and ``DoArchive`` (false keeps the binding but archives nothing). Each copy is its own
``.eml`` file, written atomically (see :func:`archive`).
"""

from seo_sink_archive._sink import ArchiveSink, archive, file_name, message_bytes, serialize

__all__ = ["ArchiveSink", "archive", "file_name", "message_bytes", "serialize"]
