"""Words -> word labels in process, on any runner, as fast as the model allows.

The steps, each vectorised where it counts:
1. `preprocess.encode.encode`: one call of the fast tokenizer on all sentences; long sentences
   are windowed by `preprocess.align.Aligner` (every word scored once, as `bin_create.py` does);
2. `preprocess.plan.plan`: rows sorted by length and cut into batches that pad little (a token
   budget and a row cap), or, for the old recipe, fixed batches in file order padded to one length;
3. per batch: padded int64 inputs (`common.feeds`), run in order by `runner.infer_many`, and the
   logits read at the scored positions only (`preprocess.encode.word_label_ids`);
4. the flat per-word label ids cut back into tags per sentence.

Context (`context=`): `sentence` labels each sentence on its own; `document` (FLERT, as
`bin_create.py --context document`) makes the sentences of each document one token sequence, cut
into windows of `max_len` tokens overlapping by `window_overlap` (default half a window); each word
is scored once, in the window where it has the most context. `label(sentences, documents=...)` says
which sentences form a document (lists of sentence indices; default each sentence its own); in
sentence context `documents` is ignored.

The engine does not own the runner's lifetime: activate it before labelling, deactivate it after.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

import numpy as np

from common.errors import UserError
from common.model_spec import CONTEXTS, OUTPUT_NAME
from preprocess.align import Aligner
from preprocess.encode import Rows, encode, label_names, split_per_sentence, word_label_ids, word_label_probs
from preprocess.plan import BatchPolicy, batch_feed, plan
from runners.base import infer_in_order

Documents = Optional[Sequence[Sequence[int]]]


@dataclass(frozen=True)
class WordLabels:
    """Per sentence: each word's tag and the probability the model gave that tag."""

    tags: list[list[str]]
    probs: list[list[float]]


class Engine:
    """Labels lists of words with a token classifier behind the runner interface.

    `runner`: anything with `infer(feed) -> {output name: array}` (`runners.base.BaseRunner`);
    `input_names`/`id2label`: the model spec's; `policy`: how rows are batched; `max_len`: the
    model's positions or the document windows (rows never exceed a fixed `policy.pad_to` either).
    `check_inputs=False` skips the runner's per-call feed check (the feeds are built from the spec;
    the benchmark times without it).
    `context`/`window_overlap`: see the module docstring (windows are `max_len` tokens long)."""

    def __init__(self, runner, *, tokenizer, input_names: Sequence[str], id2label: Mapping[int, str],
                 policy: BatchPolicy, max_len: int = 512, output_name: str = OUTPUT_NAME, check_inputs: bool = True,
                 context: str = "sentence", window_overlap: Optional[int] = None):
        if context not in CONTEXTS:
            raise UserError(f"--context {context!r}: expected one of {', '.join(CONTEXTS)}")
        self.runner, self.tokenizer = runner, tokenizer
        self.input_names, self.id2label, self.policy = tuple(input_names), dict(id2label), policy
        # rows (windows) fit both: a fixed pad_to longer than the windows only pads them (the old recipe's 512)
        self.max_len = min(policy.pad_to, max_len) if policy.pad_to else max_len
        self.output_name, self.check_inputs = output_name, check_inputs
        self.pad_id = tokenizer.pad_token_id or 0
        self.context, self.window_overlap = context, window_overlap
        # built once (it checks the overlap against the window); sentence context without an overlap
        # keeps building one only for the rare sentence that needs windows
        self.aligner = None
        if context == "document" or window_overlap is not None:
            try:
                self.aligner = Aligner(tokenizer, self.max_len, window_overlap)
            except ValueError as err:
                raise UserError(str(err)) from None

    def encode(self, sentences: Sequence[Sequence[str]], documents: Documents = None) -> Rows:
        """Rows of `sentences`; in document context, `documents` (default: each sentence its own)
        groups them into windowed sequences."""
        if self.context == "document":
            groups = documents if documents is not None else [[s] for s in range(len(sentences))]
            return encode(self.tokenizer, sentences, self.max_len, self.aligner, documents=groups)
        return encode(self.tokenizer, sentences, self.max_len, self.aligner)

    def label_ids(self, rows: Rows, with_probs: bool = False) -> tuple[np.ndarray, Optional[np.ndarray]]:
        """Label id of every word (flat; `rows.offsets` splits it per sentence), and with `with_probs`
        the probability of each chosen label."""
        ids = np.full(rows.num_words, -1, dtype=np.int64)
        probs = np.zeros(rows.num_words, dtype=np.float64) if with_probs else None
        batches = plan(rows, self.policy)
        # feeds are built as the runner asks for them: with streams, the next batch runs while this one decodes
        feeds = (batch_feed(rows, batch, self.input_names, self.pad_id) for batch in batches)
        # run to the end (not zip, which leaves the runner's generator suspended after the last batch)
        for index, outputs in enumerate(infer_in_order(self.runner, feeds, self.check_inputs)):
            batch, logits = batches[index], outputs[self.output_name]
            if with_probs:
                ids[batch.word_slot], probs[batch.word_slot] = word_label_probs(logits, batch.word_row, batch.word_pos)
            else:
                ids[batch.word_slot] = word_label_ids(logits, batch.word_row, batch.word_pos)
        if rows.num_words and ids.min() < 0:  # the encoder scores every word once; anything else is our bug
            raise RuntimeError(f"word {int(np.argmax(ids < 0))} was not scored by any row")
        return ids, probs

    def label(self, sentences: Sequence[Sequence[str]], documents: Documents = None) -> list[list[str]]:
        """Words -> tags, everything included (tokenising, batching, inference, decoding)."""
        rows = self.encode(sentences, documents)
        return label_names(self.label_ids(rows)[0], rows.offsets, self.id2label)

    def label_with_probs(self, sentences: Sequence[Sequence[str]], documents: Documents = None) -> WordLabels:
        """Words -> tags and the probability of each tag (entity scores of the raw-text predictor)."""
        rows = self.encode(sentences, documents)
        ids, probs = self.label_ids(rows, with_probs=True)
        return WordLabels(label_names(ids, rows.offsets, self.id2label), split_per_sentence(probs, rows.offsets))
