"""Where the project's default model and the CoNLL data live (env vars override)."""
from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL_NAME = "minilm-l6-conll03"
# CANN's environment script, sourced before atc / ais_bench can run (named in their "not found" errors).
CANN_SET_ENV = "/usr/local/Ascend/ascend-toolkit/set_env.sh"
DEFAULT_MODEL_DIR = Path(os.environ.get("NER_DEFAULT_MODEL", ROOT / "models" / DEFAULT_MODEL_NAME))


def conll_dir() -> Path:
    """CoNLL-2003 folder: $NER_DATA_DIR, else ../shared/data/conll2003 beside the repository."""
    return Path(os.environ.get("NER_DATA_DIR", ROOT.parent / "shared" / "data" / "conll2003"))
