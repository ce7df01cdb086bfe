"""The settings of one NNTP source, as the config file's ``[sources."nntp/N"]`` table gives them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seo_core.config.settings import default_hostname, parse_listen

DEFAULT_MAX_ARTICLE_SIZE = 1024 * 1024
DEFAULT_SHUTDOWN_TIMEOUT = 30.0
DEFAULT_IDLE_TIMEOUT = 300.0


@dataclass(frozen=True, slots=True)
class NntpSettings:
    """Where an NNTP source listens, where it keeps articles and which groups it carries."""

    name: str
    host: str
    port: int
    hostname: str
    """The name in the greeting, in ``Path:`` and ``Xref:``, and in generated Message-IDs."""
    store: Path
    groups: tuple[str, ...] = ()
    moderated: frozenset[str] = frozenset()
    """Groups of ``groups`` that LIST ACTIVE reports as moderated (``m``); the moderating
    itself is a sink's, bound to OnPostEarly."""
    max_article_size: int = DEFAULT_MAX_ARTICLE_SIZE
    """Bytes of article a client may send (after dot-stuffing is undone); more gets 441."""
    shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT
    """Seconds a command in progress (a POST being received) may take to finish on stop."""
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    """Seconds a client may send nothing (between commands or inside an article) before the
    session is closed; a half-sent article is dropped."""

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @classmethod
    def from_mapping(cls, name: str, settings: Mapping[str, Any]) -> NntpSettings:
        """Build from a validated settings table (paths already absolute)."""
        host, port = parse_listen(str(settings["listen"]))
        instance = name.partition("/")[2]
        groups = (str(g).strip() for g in settings.get("groups") or ())
        return cls(
            name=name,
            host=host,
            port=port,
            hostname=str(settings.get("hostname") or default_hostname()),
            store=Path(settings.get("store") or f"var/news/nntp-{instance}"),
            groups=tuple(dict.fromkeys(g for g in groups if g)),
            moderated=frozenset(str(g).strip() for g in settings.get("moderated") or ()),
            max_article_size=int(settings.get("max_article_size", DEFAULT_MAX_ARTICLE_SIZE)),
            shutdown_timeout=float(settings.get("shutdown_timeout", DEFAULT_SHUTDOWN_TIMEOUT)),
            idle_timeout=float(settings.get("idle_timeout", DEFAULT_IDLE_TIMEOUT)),
        )
