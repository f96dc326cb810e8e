"""Framework-neutral HTTP answers: what services return and the edge turns into responses."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class HttpResult:
    """A framework-neutral HTTP answer."""

    body: dict[str, Any] | str
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
