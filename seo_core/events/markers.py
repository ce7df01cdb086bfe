"""The pluggy markers of the ``seo`` project.

Sinks mark their hook functions with :data:`hookimpl`; the framework declares one
:data:`hookspec` per event. Both carry the project name ``seo``, so pluggy refuses an
implementation whose name or arguments do not match a specification.
"""

from __future__ import annotations

import pluggy

PROJECT = "seo"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)
