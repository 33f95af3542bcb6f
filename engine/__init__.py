"""In-process words -> labels: encode, plan, run on a runner, decode (what the benchmark, the apps
and corpus jobs share). See `engine.core.Engine`; runners by backend name: `engine.backends.open_runner`
(imported from there, so that `import engine` loads no backend)."""
from .core import Engine, WordLabels

__all__ = ["Engine", "WordLabels"]
