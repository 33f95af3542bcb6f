"""One shard, start to finish, the same for every engine: read -> encode -> label -> Parquet + counts.

`encode_shard` and `label_shard` are the two halves both engines run (the local loop calls them in
turn; the Ray pipeline runs them in two `map_batches` stages), through `engine.Engine`: the same
encoder, batch plan, runner call and decoder as the benchmark and the raw-text predictor. A shard's
Parquet bytes and counts are built in memory and written by `write_shard` (atomically, counts
last), so a shard is either complete on disk or absent.
"""
from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from common.atomic import write_bytes, write_json
from common.metrics import Counts, count_entities
from common.tags import entities as word_spans_of_tags
from common.tags import to_iob2
from engine import Engine
from preprocess.encode import Rows, label_names, split_per_sentence
from preprocess.plan import BatchPolicy
from preprocess.text import text_entities, word_spans

from .inputs import Item, ShardSpec, read_shard

# Length-sorted batches under a padded-token budget: what the benchmark found fast on CPU.
POLICY = BatchPolicy(max_rows=64, max_tokens=8192)
SCORE_DIGITS = 4  # entity scores as the raw-text predictor rounds them

_ENTITY = pa.struct([("first", pa.int32()), ("last", pa.int32()), ("type", pa.string()), ("score", pa.float64()),
                     ("start", pa.int32()), ("end", pa.int32())])
SCHEMA = pa.schema([("source", pa.string()), ("doc", pa.int64()), ("sentence", pa.int64()), ("line", pa.int64()),
                    ("id", pa.string()), ("text", pa.string()), ("words", pa.list_(pa.string())),
                    ("tags", pa.list_(pa.string())), ("gold", pa.list_(pa.string())),
                    ("entities", pa.list_(_ENTITY))])


def make_engine(runner, spec, tokenizer, context: str = "sentence", window_overlap: Optional[int] = None) -> Engine:
    return Engine(runner, tokenizer=tokenizer, input_names=spec.input_names, id2label=spec.id2label,
                  policy=POLICY, max_len=window_length(spec), context=context, window_overlap=window_overlap)


def window_length(spec) -> int:
    """Tokens per row (and per document window): the model's positions, at most 512."""
    return min(spec.max_positions, 512)


@dataclass(frozen=True)
class EncodedShard:
    spec: ShardSpec
    items: list[Item]
    words: list[tuple[str, ...]]
    char_spans: list[Optional[list]]  # per item: the words' character spans (text input) or None
    rows: Optional[Rows]


def encode_shard(engine: Engine, spec: ShardSpec) -> EncodedShard:
    items = list(read_shard(spec))
    words, char_spans = [], []
    for item in items:
        if item.text is None:
            words.append(item.words)
            char_spans.append(None)
        else:
            found = word_spans(engine.tokenizer, item.text)
            words.append(tuple(item.text[s:e] for s, e in found))
            char_spans.append(found)
    rows = engine.encode(words, shard_documents(items) if spec.grouped else None) if items else None
    return EncodedShard(spec, items, words, char_spans, rows)


def shard_documents(items: list[Item]) -> list[list[int]]:
    """Item indices grouped into documents: runs of equal `Item.doc`."""
    documents: list[list[int]] = []
    for index, item in enumerate(items):
        if documents and items[documents[-1][0]].doc == item.doc:
            documents[-1].append(index)
        else:
            documents.append([index])
    return documents


def label_shard(engine: Engine, shard: EncodedShard) -> tuple[bytes, dict]:
    """Parquet bytes (one row per sentence) and the shard's metric counts."""
    if shard.rows is not None:
        ids, probs = engine.label_ids(shard.rows, with_probs=True)
        raw_tags = label_names(ids, shard.rows.offsets, engine.id2label)
        probs = split_per_sentence(probs, shard.rows.offsets)
    else:
        raw_tags, probs = [], []
    records, gold, pred = [], [], []
    repaired = 0
    for item, words, found, raw, prob in zip(shard.items, shard.words, shard.char_spans, raw_tags, probs):
        tags = to_iob2(raw)
        ents = _entities(item.text, found, tags, prob)
        if item.tags is not None:
            gold.append(list(item.tags))
            pred.append(tags)
            repaired += sum(a != b for a, b in zip(raw, tags))
        records.append({"source": item.source, "doc": item.doc, "sentence": item.sentence, "line": item.line,
                        "id": item.id, "text": item.text, "words": list(words), "tags": tags,
                        "gold": list(item.tags) if item.tags is not None else None, "entities": ents})
    per_type = count_entities(gold, pred)
    counts = {
        "shard": shard.spec.shard,
        "source": shard.spec.path,
        "sentences": len(records),
        "words": sum(len(r["words"]) for r in records),
        "samples": shard.rows.num_rows if shard.rows is not None else 0,
        "scored_sentences": len(gold),
        "scored_words": sum(len(g) for g in gold),
        "words_right": sum(g == p for gs, ps in zip(gold, pred) for g, p in zip(gs, ps)),
        "repaired_tags": repaired,
        "per_type": {t: {"correct": c.correct, "predicted": c.predicted, "gold": c.gold} for t, c in per_type.items()},
    }
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(records, schema=SCHEMA), buffer)
    return buffer.getvalue(), counts


def _entities(text, found, tags, probs) -> list[dict]:
    """Word spans, type and mean word probability; character offsets too where the input was text."""
    chunks = word_spans_of_tags(tags)
    if text is not None:
        located = text_entities(text, found, tags, probs)  # same chunks, same order, rounded mean score
        return [{"first": first, "last": last, "type": etype, "score": ent.score, "start": ent.start,
                 "end": ent.end} for (etype, first, last), ent in zip(chunks, located)]
    return [{"first": first, "last": last, "type": etype,
             "score": round(float(np.mean(probs[first:last + 1])), SCORE_DIGITS), "start": None, "end": None}
            for etype, first, last in chunks]


# -- on disk ------------------------------------------------------------------------------------------------
def shard_paths(shards_dir: Path, shard: int) -> tuple[Path, Path]:
    return shards_dir / f"shard-{shard:05d}.parquet", shards_dir / f"shard-{shard:05d}.counts.json"


def is_done(shards_dir: Path, shard: int) -> bool:
    return all(p.is_file() for p in shard_paths(shards_dir, shard))


def write_shard(shards_dir: Path, shard: int, parquet: bytes, counts: dict) -> None:
    table_path, counts_path = shard_paths(shards_dir, shard)
    write_bytes(table_path, parquet)
    write_json(counts_path, counts)  # last: the shard counts as done only when both are there


def read_counts(shards_dir: Path, shard: int) -> dict:
    return json.loads(shard_paths(shards_dir, shard)[1].read_text(encoding="utf-8"))


def counts_per_type(counts: dict) -> dict[str, Counts]:
    return {t: Counts(c["correct"], c["predicted"], c["gold"]) for t, c in counts["per_type"].items()}
