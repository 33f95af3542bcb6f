#!/usr/bin/env bash
# The whole ModelZoo flow through its entry points, on ONNX Runtime:
#   bin_create.py -> convert.export -> fix_onnx.py -> (onnxsim + convert_om.sh --dry-run) -> infer -> bert_metric.py
# Usage: bash scripts/run_all.sh [--model_dir DIR] [--input_file FILE] [--work_dir DIR]
#                                [--seq_len 512] [--buckets 16,20,...,256] [--batchsize 32]
#                                [--max_tokens 512] [--context sentence|document] [--window_overlap N]
#                                (default context: the one the model was trained in, config.json ner_context)
#                                [--soc_version Ascend310P3]
# With no arguments: the project's default model on CoNLL-2003 test ($NER_DATA_DIR/test.txt, default
# ../shared/data/conll2003/test.txt), else on samples/sample.conll. A rerun with the same --work_dir
# reuses finished stages (inputs, ONNX graphs, inference outputs) instead of redoing them.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1

# Fine length buckets pad little (CoNLL sentences are short: 80k padded tokens for CoNLL-2003 test, against 85k
# with the benchmark's 16,24,32,48,64,96,128,256 and 129k with 32..512) and 32 rows keep a short bucket's batch
# big enough for fast GEMMs: on the default model, session.run throughput 34 vs 28 samples/s for the
# benchmark's buckets with batch 16, in alternating runs on a loaded 2-core machine
model_dir=""; input_file=""; work_dir=""; seq_len=""; buckets="16,20,24,28,32,40,48,56,64,80,96,128,192,256"
batchsize=32
# infer regroups the samples by real length under this token budget (infer.repack): the budget the
# benchmark's in-process paths run best with (bench/paths.py DEFAULT_POLICY); 0 = ais_bench's batches
max_tokens=""
# sentence: each sentence on its own; document: the sentences of each -DOCSTART- document as one sequence,
# windows of --seq_len tokens overlapping by --window_overlap (bin_create --context document)
context=""; window_overlap=""
soc_version="Ascend310P3"
while [ $# -gt 0 ]; do
  case "$1" in
    --model_dir) model_dir="$2"; shift 2 ;;
    --input_file) input_file="$2"; shift 2 ;;
    --work_dir) work_dir="$2"; shift 2 ;;
    --seq_len) seq_len="$2"; shift 2 ;;
    --buckets) buckets="$2"; shift 2 ;;
    --batchsize) batchsize="$2"; shift 2 ;;
    --max_tokens) max_tokens="$2"; shift 2 ;;
    --context) context="$2"; shift 2 ;;
    --window_overlap) window_overlap="$2"; shift 2 ;;
    --soc_version) soc_version="$2"; shift 2 ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "error: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

[ -n "$model_dir" ] || model_dir="models/minilm-l6-conll03"
if [ -z "$input_file" ]; then
  input_file="${NER_DATA_DIR:-../shared/data/conll2003}/test.txt"
  [ -f "$input_file" ] || { echo "note: $input_file not found; using samples/sample.conll" >&2; input_file="samples/sample.conll"; }
fi
[ -d "$model_dir" ] || { echo "error: $model_dir: model folder does not exist" >&2; exit 1; }
[ -f "$input_file" ] || { echo "error: $input_file: file does not exist" >&2; exit 1; }
# without --context: the context the model was trained in (config.json ner_context, written by train.finetune);
# document windows: the model's own, else common.model_spec.DEFAULT_DOCUMENT_WINDOWS (what bench.context measured);
# padded tokens per batch: the benchmark's budget for the context (bench.paths.DEFAULT_MAX_TOKENS)
case "$context" in ""|sentence|document) ;; *) echo "error: --context $context: use sentence or document" >&2; exit 1 ;; esac
read -r context default_seq_len default_max_tokens default_overlap < <(python -c "
import sys
from bench.paths import DEFAULT_MAX_TOKENS
from common.model_spec import context_to_run, read_model_spec
try:
    c = context_to_run(read_model_spec(sys.argv[1]).trained_context, sys.argv[2] or None)
except Exception as err:  # a config.json it cannot read: its one-line error, and no context for the shell
    sys.exit(f'error: {err}')
print(c.context, c.seq_len or 512, DEFAULT_MAX_TOKENS[c.context], '' if c.window_overlap is None else c.window_overlap)" \
  "$model_dir" "$context")
[ -n "$context" ] || exit 1  # the line above said why
: "${seq_len:=$default_seq_len}"; : "${max_tokens:=$default_max_tokens}"
if [ "$context" = document ]; then
  : "${window_overlap:=$default_overlap}"; suffix="-doc"
else
  suffix=""
fi
[ -n "$work_dir" ] || work_dir="runs/$(basename "$model_dir")-$(basename "${input_file%.*}")-$seq_len$suffix"
mkdir -p "$work_dir"
echo "model: $model_dir   data: $input_file   work dir: $work_dir"

stage() { echo; echo "== $* =="; }
started=$(date +%s.%N)

stage "1/6 preprocess: bin_create.py"
index=$(ls -t "$work_dir"/bert_bin/bert_bin_*.index.jsonl 2>/dev/null | head -n1 || true)
if [ -z "$index" ]; then
  python bin_create.py --input_file "$input_file" --model_name_from_hub "$model_dir" \
    --save_dir "$work_dir/bert_bin" --seq_len "$seq_len" ${buckets:+--buckets "$buckets"} --context "$context" \
    ${window_overlap:+--window_overlap "$window_overlap"}
  index=$(ls -t "$work_dir"/bert_bin/bert_bin_*.index.jsonl | head -n1)
else
  echo "reusing $index"
fi
stem="${index%.index.jsonl}"
inputs=$(python -c "import json,sys; h=json.loads(open(sys.argv[1]).readline()); print(','.join(sys.argv[2]+'/'+n for n in h['input_names']))" "$index" "$stem")

stage "2/6 export: python -m convert.export"
[ -f "$work_dir/model.onnx" ] || python -m convert.export --model_dir "$model_dir" --output "$work_dir/model.onnx"
[ -f "$work_dir/model.onnx" ] && echo "$work_dir/model.onnx"

stage "3/6 graph fix: fix_onnx.py"
[ -f "$work_dir/model_fix.onnx" ] || python fix_onnx.py "$work_dir/model.onnx" "$work_dir/model_fix.onnx"
echo "$work_dir/model_fix.onnx"

stage "4/6 for Ascend: onnxsim (static ${batchsize}x$seq_len) + convert_om.sh --dry-run"
static="$work_dir/model_bs${batchsize}_seq${seq_len}_sim.onnx"
[ -f "$static" ] || python -m convert.simplify --input "$work_dir/model_fix.onnx" --output "$static" \
  --batch_size "$batchsize" --seq_len "$seq_len"
# the same length buckets as preprocess (which always adds seq_len) become ATC gears
if [ -n "$buckets" ]; then shape_args=(--buckets "$buckets,$seq_len"); else shape_args=(--seq_len "$seq_len"); fi
bash convert_om.sh --model "$work_dir/model_fix.onnx" --bs "$batchsize" "${shape_args[@]}" \
  --soc_version "$soc_version" --output "$work_dir/model_om" --dry-run

stage "5/6 inference: python -m infer (ONNX Runtime)"
python -m infer --model "$work_dir/model_fix.onnx" --input "$inputs" --output "$work_dir/result" \
  --outfmt NPY --batchsize "$batchsize" $([ "$max_tokens" != 0 ] && echo --max_tokens "$max_tokens")
result_dir=$(ls -td "$work_dir"/result/*/ | head -n1)

stage "6/6 score: bert_metric.py"
python bert_metric.py --result_dir "$result_dir" --anno_file "$stem.anno" \
  --predictions "$work_dir/predictions.txt"

# scores and speeds, each speed labelled with what it spans (see scripts/summarize_run.py)
# ... and beside the inference figure, the same graph and backend in process on the same sentences
total_seconds=$(python -c "import sys,time; print(time.time()-float(sys.argv[1]))" "$started")
python scripts/summarize_run.py --result_dir "$result_dir" --work_dir "$work_dir" --total_seconds "$total_seconds" \
  --model_file "$work_dir/model_fix.onnx" --model_dir "$model_dir" --input_file "$input_file" \
  --context "$context" --seq_len "$seq_len" ${window_overlap:+--window_overlap "$window_overlap"} \
  --max_tokens "$max_tokens"
