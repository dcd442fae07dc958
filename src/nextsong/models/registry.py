"""Models by name: how `nextsong evaluate`, `train` and `recommend` find them without code changes.

A model module registers each name it serves with `@register("name", kind=...)` on its
`Recommender` subclass; one class may serve several names with different settings (an ablation is
`register("nextsong-no-graph", kind="trained", graph=False)` on the same class). `discover()`
imports every module of the `nextsong.models` package, so a new file that registers a name is
found by every command. Kinds:

- `baseline`: fitted on the fly by `evaluate` (seconds);
- `trained`: fitted by `nextsong train`, which saves runs under DIR/models/ (see `runs.py`);
  `evaluate` loads the best run of each trained name;
- `oracle`: reads the synthetic world's hidden truth; available only where the world has one.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nextsong.errors import ConfigError, DataError
from nextsong.models.base import Recommender, read_model_record, read_weights

KINDS = ("oracle", "baseline", "trained")


@dataclass(frozen=True)
class ModelSpec:
    """A registered name: the class that implements it and the settings that make it this name."""

    name: str
    cls: type[Recommender]
    kind: str
    settings: dict[str, Any] = field(default_factory=dict)
    # Smaller settings for the shared behaviour tests (fewer epochs, say), so they stay fast.
    test_settings: dict[str, Any] = field(default_factory=dict)

    @property
    def requires_truth(self) -> bool:
        return self.kind == "oracle"

    def create(self, **overrides: Any) -> Recommender:
        model = self.cls(**{**self.settings, **overrides})
        model.name = self.name
        return model


_REGISTRY: dict[str, ModelSpec] = {}
_discovered = False


def register(
    name: str, kind: str, test_settings: dict[str, Any] | None = None, **settings: Any
) -> Callable[[type[Recommender]], type[Recommender]]:
    """Class decorator: registers `name` for this class with `settings` applied to its Config."""
    if kind not in KINDS:
        raise ConfigError(f"model kind must be one of {', '.join(KINDS)}, got {kind!r}")

    def decorate(cls: type[Recommender]) -> type[Recommender]:
        existing = _REGISTRY.get(name)
        if existing is not None and existing.cls.__qualname__ != cls.__qualname__:
            raise ConfigError(
                f"model name {name!r} is registered twice ({existing.cls.__qualname__} and "
                f"{cls.__qualname__})"
            )
        cls._make_config(settings)  # fail now, not at first use, on a setting the class lacks
        _REGISTRY[name] = ModelSpec(name, cls, kind, dict(settings), dict(test_settings or {}))
        return cls

    return decorate


def discover() -> None:
    """Imports every module of `nextsong.models` once, so that every registration has run."""
    global _discovered
    if _discovered:
        return
    import nextsong.models as package

    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package.__name__}.{module.name}")
    _discovered = True


def specs(kind: str | None = None) -> list[ModelSpec]:
    """Every registered model (of one kind): oracle first, then baselines, then trained models,
    each kind in the order of registration (modules in alphabetical order)."""
    discover()
    chosen = [spec for spec in _REGISTRY.values() if kind is None or spec.kind == kind]
    return sorted(chosen, key=lambda spec: KINDS.index(spec.kind))


def get(name: str) -> ModelSpec:
    discover()
    if name not in _REGISTRY:
        raise ConfigError(
            f"unknown model {name!r}; registered models: {', '.join(s.name for s in specs())}"
        )
    return _REGISTRY[name]


def create(name: str, **overrides: Any) -> Recommender:
    """A new, unfitted model of a registered name."""
    return get(name).create(**overrides)


def load_model(folder: Path | str) -> Recommender:
    """A fitted model from a folder written by `Recommender.save` (checksums verified)."""
    folder = Path(folder)
    record = read_model_record(folder)
    spec = _saved_spec(record)
    try:
        config = spec.cls.Config(**record["config"])
    except TypeError as error:
        raise DataError(
            f"{folder}: the saved config of {spec.name} does not fit this code: {error}"
        ) from None
    model = spec.cls(config)
    model.name = spec.name
    model.n_songs = int(record["n_songs"])
    model.load_state(read_weights(folder), record["metadata"])
    return model


def _saved_spec(record: dict[str, Any]) -> ModelSpec:
    """The spec of a saved model: only the module of its recorded class is imported when that
    registers the name, so loading a baseline does not import torch with every other model."""
    name = record["model"]
    module = str(record.get("class", "")).rpartition(".")[0]
    if name not in _REGISTRY and module.startswith(f"{__package__}."):
        importlib.import_module(module)
    return _REGISTRY[name] if name in _REGISTRY else get(name)
