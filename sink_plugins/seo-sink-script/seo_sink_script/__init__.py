"""The ``script`` sink: the scripting host. A Python file handles the events it is bound to.

The file named by the ``ScriptName`` SinkProperty defines functions named after events, without
the source prefix (``on_arrival``, ``on_inbound_command``, ``store_driver``, ``on_post``...), each
taking any subset of ``event``, ``sink_properties``, ``source_properties`` and ``binding``. The
sink implements every SMTP and NNTP hook and calls the script's function when it has one.
"""

from seo_sink_script._script import FUNCTIONS, HOOK_ARGUMENTS, ScriptError, check_location
from seo_sink_script._sink import ScriptSink

__all__ = ["FUNCTIONS", "HOOK_ARGUMENTS", "ScriptError", "ScriptSink", "check_location"]
