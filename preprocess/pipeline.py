"""CoNLL file + checkpoint -> BinSet: read, check labels, align, window, bucket, write."""
from __future__ import annotations

import itertools
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Sequence

from tqdm import tqdm

from common.atomic import create_locked, remove_if_stale, remove_stale_temporaries
from common.errors import InputFileError, UserError
from common.model_spec import CONTEXTS, read_model_spec
from common.index_format import header_record

from .align import Aligner, Sample
from .binfile import BinSet, bucket_for, write_binset
from .conll import ConllFile, read_conll_file
from .tokenizer import load_tokenizer  # noqa: F401 - the stage's tokenizer, also used by callers of this module


def bucket_lengths(buckets: Sequence[int] | None, seq_len: int) -> list[int] | None:
    """(32, 64, 128) -> [32, 64, 128, seq_len]: seq_len is always the last bucket so every sample fits."""
    if not buckets:
        return None
    lengths = sorted(set(int(b) for b in buckets))
    shown = ",".join(map(str, lengths))
    if lengths[0] < 8:
        raise UserError(f"--buckets {shown}: buckets must be at least 8")
    if lengths[-1] > seq_len:
        raise UserError(f"--buckets {shown}: bucket {lengths[-1]} is longer than --seq_len {seq_len}")
    if lengths[-1] != seq_len:
        lengths.append(seq_len)
    return lengths


RUN_PREFIX = "bert_bin_"
CLAIM_SUFFIX = ".claim"


def run_names(save_dir: Path, stamp: str) -> list[Path]:
    """The three outputs of one run: the .bin folder, the .anno and the .index.jsonl."""
    name = f"{RUN_PREFIX}{stamp}"
    return [save_dir / name, save_dir / f"{name}.anno", save_dir / f"{name}.index.jsonl"]


def claim_path(save_dir: Path, stamp: str) -> Path:
    return save_dir / f".{RUN_PREFIX}{stamp}{CLAIM_SUFFIX}"


def prepare_save_dir(save_dir: Path) -> None:
    """Create `save_dir`, and clear what runs killed outright (kill -9, power loss) left there:
    the atomic writer's temporaries and run-name claims that no live run holds."""
    try:
        save_dir.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise InputFileError(save_dir, "is a file, not a folder (--save_dir)") from None
    except OSError as err:
        raise InputFileError(save_dir, f"cannot create the folder ({err.strerror})") from None
    if not save_dir.is_dir():
        raise InputFileError(save_dir, "is a file, not a folder (--save_dir)")
    remove_stale_temporaries(save_dir)
    for claim in save_dir.glob(f".{RUN_PREFIX}*{CLAIM_SUFFIX}"):
        remove_if_stale(claim)


@contextmanager
def claimed_stamp(save_dir: Path, stamp: str):
    """Reserve a run name for this process: `stamp`, or `stamp_1`, `stamp_2`, ... when a finished run
    or a run still writing has it. Two runs started in the same second into one --save_dir thus
    each get their own folder. The claim is a hidden file created with O_EXCL (atomic) and locked for
    as long as the run lasts; it goes once the outputs exist under the name (or the run failed)."""
    for n in itertools.count():
        candidate = stamp if n == 0 else f"{stamp}_{n}"
        if any(os.path.lexists(p) for p in run_names(save_dir, candidate)):
            continue
        claim = claim_path(save_dir, candidate)
        try:
            fd = create_locked(claim)
        except OSError as err:
            raise InputFileError(save_dir, f"cannot write into the folder ({err.strerror})") from None
        if fd is None:
            continue  # a run in progress holds this name
        # a run that finished between our check and our claim has its outputs there now
        if any(os.path.lexists(p) for p in run_names(save_dir, candidate)):
            claim.unlink(missing_ok=True)
            os.close(fd)
            continue
        try:
            yield candidate
        finally:
            claim.unlink(missing_ok=True)
            os.close(fd)
        return


def align_conll(aligner: Aligner, conll: ConllFile, context: str = "sentence", show_progress: bool = False,
                note=None) -> list[Sample]:
    """Every sentence of a CoNLL file as samples: each on its own (`sentence`), or the sentences of each
    document as one windowed sequence (`document`). A file without document marks in document mode
    is said once through `note` (each sentence is then its own document)."""
    if context not in CONTEXTS:
        raise UserError(f"--context {context!r}: expected one of {', '.join(CONTEXTS)}")
    sentences = conll.sentences
    if context == "sentence":
        groups = [[sid] for sid in range(len(sentences))]
    else:
        if not conll.has_docstart and note is not None:
            note(conll.no_docstart_note())
        groups = conll.documents()
    # one call of the fast tokenizer for the whole file (thousands of single calls cost ~4x more)
    pieces = aligner.word_pieces_many([sentence.words for sentence in sentences])
    samples: list[Sample] = []
    for group in tqdm(groups, desc="tokenize", unit="doc" if context == "document" else "sent",
                      disable=not show_progress):
        samples.extend(aligner.document_samples([(sid, sentences[sid].words) for sid in group],
                                                [pieces[sid] for sid in group]))
    return samples


def stderr_note(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def create_bins(input_file, model_dir, save_dir, seq_len: int = 512, buckets: Sequence[int] | None = None,
                overlap: int | None = None, stamp: str | None = None, show_progress: bool = True,
                context: str = "sentence") -> BinSet:
    input_file, model_dir, save_dir = Path(input_file), Path(model_dir), Path(save_dir)
    spec = read_model_spec(model_dir)
    if not 8 <= seq_len <= spec.max_positions:
        raise UserError(f"--seq_len {seq_len}: must be between 8 and the model's {spec.max_positions} positions")
    bucket_list = bucket_lengths(buckets, seq_len)
    if context not in CONTEXTS:
        raise UserError(f"--context {context!r}: expected one of {', '.join(CONTEXTS)}")
    conll = read_conll_file(input_file)
    sentences = conll.sentences

    # every data tag must be one the model knows; name the first line that breaks this
    for sentence in sentences:
        for tag, line in zip(sentence.tags, sentence.lines):
            if tag not in spec.label2id:
                raise InputFileError(input_file, f"tag {tag!r} is not a label of the model "
                                                 f"(model labels: {', '.join(sorted(spec.label2id))})", line=line)

    prepare_save_dir(save_dir)  # before the slow part, so a bad --save_dir fails at once
    tokenizer = load_tokenizer(model_dir)
    try:
        aligner = Aligner(tokenizer, seq_len, overlap)
    except ValueError as err:
        raise UserError(str(err)) from None
    samples = align_conll(aligner, conll, context, show_progress, note=stderr_note)
    lengths = [bucket_for(s.tokens, bucket_list) if bucket_list else seq_len for s in samples]

    header = header_record(context=context, id2label=spec.id2label, input_names=spec.input_names, seq_len=seq_len,
                           buckets=bucket_list, num_samples=len(samples), num_sentences=len(sentences),
                           num_words=sum(len(s) for s in sentences), source=input_file.resolve(),
                           model_dir=model_dir.resolve())
    labels = [(sid, [spec.label2id[t] for t in s.tags]) for sid, s in enumerate(sentences)]
    with claimed_stamp(save_dir, stamp or time.strftime("%Y%m%d-%H%M%S")) as run_stamp, \
            tqdm(total=len(samples), desc="write .bin", unit="sample", disable=not show_progress) as bar:
        return write_binset(save_dir, run_stamp, samples, labels, header, tokenizer.pad_token_id or 0,
                            lengths, spec.input_names, progress=bar)
