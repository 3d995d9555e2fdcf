"""Round trip of the search's configuration dataclasses through plain dicts (JSON)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, TypeVar

T = TypeVar("T", bound="DictConfig")


class DictConfig:
    """Mixin for dataclasses saved in a run's ``config.json``.

    ``from_dict`` refuses keys the dataclass does not have, naming them, instead of
    failing with a bare ``TypeError`` (or silently dropping a misspelt option).
    """

    #: What the configuration is called in error messages.
    config_name = "config"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls: type[T], data: dict[str, Any]) -> T:
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))  # type: ignore[attr-defined]
        if unknown:
            raise ValueError(f"unknown {cls.config_name} key(s) {unknown}")
        return cls(**data)
