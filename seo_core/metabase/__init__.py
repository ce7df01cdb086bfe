"""The metabase: the SQLite database of sources and bindings."""

from seo_core.metabase.records import (
    DEFAULT_TIMEOUT,
    Binding,
    BindingRef,
    BindingSpec,
    BindingStats,
    Source,
    StatsDelta,
)
from seo_core.metabase.store import BindingCheck, Metabase, validate_spec

__all__ = [
    "DEFAULT_TIMEOUT",
    "Binding",
    "BindingCheck",
    "BindingRef",
    "BindingSpec",
    "BindingStats",
    "Metabase",
    "Source",
    "StatsDelta",
    "validate_spec",
]
