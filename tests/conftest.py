"""Shared fixtures: the real CoNLL-2003 files, the default model, and tiny models built from a config."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from common.paths import DEFAULT_MODEL_DIR, conll_dir  # noqa: E402

CONLL_LABELS = ["O", "B-LOC", "I-LOC", "B-MISC", "I-MISC", "B-ORG", "I-ORG", "B-PER", "I-PER"]


@pytest.fixture(scope="session")
def conll():
    """Folder holding CoNLL-2003 train/valid/test (NER_DATA_DIR overrides ../shared/data/conll2003)."""
    folder = conll_dir()
    if not (folder / "test.txt").is_file():
        pytest.fail(f"CoNLL-2003 not found at {folder}; set NER_DATA_DIR")
    return folder


@pytest.fixture(scope="session")
def conll_sentences(conll):
    """The first 200 real sentences of CoNLL-2003 test."""
    from preprocess.conll import read_conll

    return read_conll(conll / "test.txt")[:200]


@pytest.fixture(scope="session")
def default_model_dir():
    if not (DEFAULT_MODEL_DIR / "config.json").is_file():
        pytest.fail(f"default model missing at {DEFAULT_MODEL_DIR}")
    return DEFAULT_MODEL_DIR


def build_tiny_model(folder: Path, layers: int = 2, hidden: int = 64, heads: int = 4,
                     labels=CONLL_LABELS, seed: int = 0, tokenizer_from: Path | None = None, **config) -> Path:
    """A random-weight BERT token classifier with the MiniLM (uncased) tokenizer, saved as a checkpoint.
    `config`: more BertConfig entries (they go to config.json)."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForTokenClassification

    from train.checkpoint import minilm_folder

    tok_dir = tokenizer_from or minilm_folder()
    tokenizer = AutoTokenizer.from_pretrained(tok_dir)
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=heads, intermediate_size=hidden * 4,
                        max_position_embeddings=512, num_labels=len(labels),
                        id2label=dict(enumerate(labels)), label2id={l: i for i, l in enumerate(labels)}, **config)
    model = BertForTokenClassification(config).eval()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """2 layers, hidden 64, the 9 CoNLL labels, random weights."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny_model"))


@pytest.fixture
def browser():
    """Chromium + chromedriver + selenium, or a skip that says why (only when apt was unreachable)."""
    from browser_support import apt_unreachable, availability

    ok, why = availability()
    if not ok:
        if apt_unreachable():
            pytest.skip(f"browser test skipped: {why}")
        pytest.fail(f"browser test cannot run: {why}; run `bash scripts/install_browser.sh`")
