"""The config file: sources and bindings declared in TOML, and the metabase made to match.

``load_config`` reads and checks a file, ``check_config`` checks its sinks against a registry,
``plan_config`` says what applying it would change, ``apply_config`` changes it in one
transaction, and ``export_config`` writes a metabase back as a file. Nothing runs at import.
"""

from seo_core.config.export import export_config
from seo_core.config.load import BINDING_KEYS, check_config, load_config
from seo_core.config.model import ORIGIN_PREFIX, Change, Config, SourceSettings, origin_for
from seo_core.config.plan import apply_config, plan_config
from seo_core.config.secrets import resolve_env
from seo_core.config.settings import SOURCE_KEYS, parse_listen

__all__ = [
    "BINDING_KEYS",
    "ORIGIN_PREFIX",
    "SOURCE_KEYS",
    "Change",
    "Config",
    "SourceSettings",
    "apply_config",
    "check_config",
    "export_config",
    "load_config",
    "origin_for",
    "parse_listen",
    "plan_config",
    "resolve_env",
]
