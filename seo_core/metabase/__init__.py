"""The metabase: the SQLite database of sources and bindings."""

from seo_core.metabase.records import (
    DEFAULT_TIMEOUT,
    Binding,
    BindingRef,
    BindingSpec,
    Source,
)
from seo_core.metabase.store import BindingCheck, Metabase, validate_spec

__all__ = [
    "DEFAULT_TIMEOUT",
    "Binding",
    "BindingCheck",
    "BindingRef",
    "BindingSpec",
    "Metabase",
    "Source",
    "validate_spec",
]
