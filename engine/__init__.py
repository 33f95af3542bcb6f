"""In-process words -> labels: encode, plan, run on a runner, decode (what the benchmark, the apps
and corpus jobs share). See `engine.core.Engine`."""
from .core import Engine, WordLabels

__all__ = ["Engine", "WordLabels"]
