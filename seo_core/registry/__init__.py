"""The registry: which sinks are installed, whether they load, and which one a binding names.

Nothing is scanned or imported until :meth:`SinkRegistry.discover` is called.
"""

from seo_core.registry.info import SinkInfo, SinkStatus
from seo_core.registry.manager import make_plugin_manager
from seo_core.registry.registry import DEFAULT_GROUP, SinkRegistry

__all__ = [
    "DEFAULT_GROUP",
    "SinkInfo",
    "SinkRegistry",
    "SinkStatus",
    "make_plugin_manager",
]
