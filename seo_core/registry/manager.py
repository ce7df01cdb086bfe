"""The plugin manager that knows seo's hook specifications.

It is built by a function, never as a module global, so importing seo loads no plugins and every
caller (discovery validating one sink, a test) gets a fresh manager nobody else has touched.
"""

from __future__ import annotations

import pluggy

from seo_core.events import hookspecs
from seo_core.events.markers import PROJECT


def make_plugin_manager() -> pluggy.PluginManager:
    """A new :class:`pluggy.PluginManager` for project ``seo`` with every hookspec added.

    Registering a sink into it makes pluggy check the sink's hook arguments against the
    specifications; :meth:`~pluggy.PluginManager.check_pending` then catches misspelt hook names.
    """
    manager = pluggy.PluginManager(PROJECT)
    manager.add_hookspecs(hookspecs)
    return manager
