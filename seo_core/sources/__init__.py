"""Sources: the servers that fire events (``smtp``, ``nntp``)."""
