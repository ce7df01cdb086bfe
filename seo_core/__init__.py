"""seo: Server Extension Objects for Python.

Bind event sinks, shipped as pip-installable packages, to the events of mail and news servers.
This package re-exports the small public API; sink authors import from :mod:`seo_core.sdk`.
"""

from seo_core.errors import (
    AmbiguousSinkError,
    ConfigError,
    ConfigFileError,
    ConflictError,
    EnvReferenceError,
    MetabaseError,
    NotFoundError,
    RuleError,
    SchemaTooNewError,
    SeoError,
    SinkError,
    SinkLoadError,
    SinkNotFoundError,
    SinkPropertyError,
    SourceStartError,
    UnknownEventError,
    UnknownSourceError,
    UnmadeMetabaseError,
    ValidationError,
)
from seo_core.metabase import Binding, BindingSpec, Metabase, Source
from seo_core.properties import PropertyBag

__all__ = [
    "AmbiguousSinkError",
    "Binding",
    "BindingSpec",
    "ConfigError",
    "ConfigFileError",
    "ConflictError",
    "EnvReferenceError",
    "Metabase",
    "MetabaseError",
    "NotFoundError",
    "PropertyBag",
    "RuleError",
    "SchemaTooNewError",
    "SeoError",
    "SinkError",
    "SinkLoadError",
    "SinkNotFoundError",
    "SinkPropertyError",
    "Source",
    "SourceStartError",
    "UnknownEventError",
    "UnknownSourceError",
    "UnmadeMetabaseError",
    "ValidationError",
]
