"""Round trip of the search's configuration dataclasses through plain dicts (JSON)."""

from __future__ import annotations

import math
from dataclasses import asdict, fields
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

    def check_field_types(self) -> None:
        """Refuses a field whose value is not of its annotated kind, before any range check
        could let it through: ``epochs=2.5`` would run 3 epochs, ``True`` count as 1, a
        float batch size fail deep inside the data loader. Integer fields take ints (not
        bools); float fields take finite real numbers; seeds lie in ``[0, 2**63)``."""
        for spec in fields(self):  # type: ignore[arg-type]
            value = getattr(self, spec.name)
            kind = str(spec.type).replace("Optional[", "").rstrip("]")
            if value is None and str(spec.type).startswith("Optional["):
                continue
            if kind == "int":
                if isinstance(value, bool) or not isinstance(value, int):
                    raise ValueError(f"{self.config_name}: {spec.name} must be an integer, got {value!r}")
                if spec.name == "seed" and not 0 <= value < 2**63:
                    raise ValueError(f"{self.config_name}: seed must be in [0, 2**63), got {value!r}")
            elif kind == "float":
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                    raise ValueError(f"{self.config_name}: {spec.name} must be a finite number, got {value!r}")
