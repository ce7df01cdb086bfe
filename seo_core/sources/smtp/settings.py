"""The settings of one SMTP source, as the config file's ``[sources."smtp/N"]`` table gives them."""

from __future__ import annotations

import functools
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seo_core.config.settings import parse_listen

DEFAULT_RETRY_SCHEDULE = (1.0, 5.0, 30.0, 120.0, 600.0)
DEFAULT_MAX_MESSAGE_SIZE = 10 * 1024 * 1024
DEFAULT_MAX_RECIPIENTS = 100
DEFAULT_MAX_CONNECTIONS = 100
DEFAULT_SHUTDOWN_TIMEOUT = 30.0
DELIVERY_MODES = ("process", "inline")
"""Where accepted messages are delivered: a process of the source's own, or the listener's."""


@dataclass(frozen=True, slots=True)
class SmtpSettings:
    """Where an SMTP source listens and how it treats mail."""

    name: str
    host: str
    port: int
    hostname: str = field(default_factory=socket.getfqdn)
    local_domains: tuple[str, ...] = ()
    spool: Path = Path("var/spool/smtp-1")
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    max_recipients: int = DEFAULT_MAX_RECIPIENTS
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    """Sessions at once; more are told 421 (each may hold a message of max_message_size)."""
    retry_schedule: tuple[float, ...] = DEFAULT_RETRY_SCHEDULE
    shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT
    delivery: str = "process"
    delivery_priority: str = "idle"

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @classmethod
    def from_mapping(cls, name: str, settings: Mapping[str, Any]) -> SmtpSettings:
        """Build from a validated settings table (paths already absolute)."""
        host, port = parse_listen(str(settings["listen"]))
        hostname = str(settings.get("hostname") or socket.getfqdn())
        domains: Sequence[str] = settings.get("local_domains") or (hostname,)
        instance = name.partition("/")[2]
        return cls(
            name=name,
            host=host,
            port=port,
            hostname=hostname,
            local_domains=tuple(canonical_domain(d) for d in domains),
            spool=Path(settings.get("spool") or f"var/spool/smtp-{instance}"),
            max_message_size=int(settings.get("max_message_size", DEFAULT_MAX_MESSAGE_SIZE)),
            max_recipients=int(settings.get("max_recipients", DEFAULT_MAX_RECIPIENTS)),
            max_connections=int(settings.get("max_connections", DEFAULT_MAX_CONNECTIONS)),
            retry_schedule=tuple(
                float(s) for s in settings.get("retry_schedule", DEFAULT_RETRY_SCHEDULE)
            ),
            shutdown_timeout=float(settings.get("shutdown_timeout", DEFAULT_SHUTDOWN_TIMEOUT)),
            delivery=str(settings.get("delivery", "process")),
            delivery_priority=str(settings.get("delivery_priority", "idle")),
        )

    def to_mapping(self) -> dict[str, Any]:
        """The settings table that :meth:`from_mapping` reads back into these settings."""
        return {
            "listen": self.address,
            "hostname": self.hostname,
            "local_domains": list(self.local_domains),
            "spool": str(self.spool),
            "max_message_size": self.max_message_size,
            "max_recipients": self.max_recipients,
            "max_connections": self.max_connections,
            "retry_schedule": list(self.retry_schedule),
            "shutdown_timeout": self.shutdown_timeout,
            "delivery": self.delivery,
            "delivery_priority": self.delivery_priority,
        }


@functools.lru_cache(maxsize=4096)
def canonical_domain(domain: str) -> str:
    """Lower case, no trailing dot, A-labels: how domains are compared everywhere."""
    text = domain.strip().rstrip(".").lower()
    try:
        return text.encode("idna").decode("ascii")
    except UnicodeError:
        return text
