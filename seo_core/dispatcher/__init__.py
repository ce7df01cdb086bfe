"""The dispatcher: per source, notifies the bound sinks of each event in order."""

from seo_core.dispatcher.dispatcher import Dispatcher
from seo_core.dispatcher.plan import Plan, PlannedCall
from seo_core.dispatcher.result import DispatchResult
from seo_core.dispatcher.timeouts import SinkTimeout

__all__ = ["DispatchResult", "Dispatcher", "Plan", "PlannedCall", "SinkTimeout"]
