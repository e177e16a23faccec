"""Generation engines: one file per base model family, one shared interface (`GenerationEngine`), one registry.

Callers pick an engine by name (`get_engine("mvideo")`) or wrap a loaded pipeline (`as_engine(pipe)`) and never
branch on which engine it is. A new engine subclasses `GenerationEngine` in its own file and is listed in `ENGINES`.
"""

from __future__ import annotations

from typing import Any

from mvideo_core.engines.base import EngineError, GenerationEngine, PreparedGeneration
from mvideo_core.engines.mvideo import MVideoEngine, MVideoPrepared
from mvideo_core.engines.vace import VaceEngine, VacePrepared

DEFAULT_ENGINE = MVideoEngine.name
ENGINES: dict[str, type[GenerationEngine]] = {engine.name: engine for engine in (MVideoEngine, VaceEngine)}


def get_engine(name: str) -> type[GenerationEngine]:
    """The engine class registered as `name`; a ValueError lists the known ones."""
    if name not in ENGINES:
        raise EngineError(f"unknown engine {name!r}; choose one of {', '.join(ENGINES)}")
    return ENGINES[name]


def as_engine(model: Any) -> GenerationEngine:
    """`model` if it is an engine, else the registered engine wrapping its pipeline class (e.g. an MVideoPipeline)."""
    if isinstance(model, GenerationEngine):
        return model
    for engine in ENGINES.values():
        if engine.pipeline_class is not None and isinstance(model, engine.pipeline_class):
            return engine(model)
    raise TypeError(f"no generation engine wraps a {type(model).__name__}; known: {', '.join(ENGINES)}")


__all__ = [
    "DEFAULT_ENGINE",
    "ENGINES",
    "EngineError",
    "GenerationEngine",
    "MVideoEngine",
    "MVideoPrepared",
    "PreparedGeneration",
    "VaceEngine",
    "VacePrepared",
    "as_engine",
    "get_engine",
]
