"""The file-based flow on the whole file: bin_create --buckets -> python -m infer -> bert_metric, each stage timed.

infer regroups the samples by real length under the in-process paths' token budget (`--max_tokens`,
`infer.repack`): the length buckets then cost bytes on disk, not compute, and the flow runs the
batches the in-process engine runs."""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

from infer.offline import run_offline
from postprocess.score import score_run
from preprocess.pipeline import create_bins

from .measure import Context


def file_flow(ctx: Context, model_file: Path, work_dir: Path, *, buckets: tuple[int, ...], batchsize: int,
              max_tokens: int | None) -> dict:
    """The three stages in process (the library calls behind the commands), and the commands themselves."""
    flow_dir = Path(tempfile.mkdtemp(prefix="file_flow_", dir=work_dir))
    t0 = time.perf_counter()
    words_in = ctx.words_in
    seq_len = words_in.seq_len or 512
    buckets = tuple(b for b in buckets if b <= seq_len)  # document windows may be shorter than a bucket
    shown = ",".join(map(str, buckets))
    binset = create_bins(ctx.input_file, ctx.model_dir, flow_dir / "bert_bin", seq_len=seq_len, buckets=buckets,
                         show_progress=False, context=words_in.context, overlap=words_in.window_overlap)
    t1 = time.perf_counter()
    run = run_offline(model=model_file, input=",".join(str(d) for d in binset.input_dirs()),
                      output=flow_dir / "result", outfmt="BIN", batchsize=batchsize, max_tokens=max_tokens,
                      log=lambda _: None, progress=False)
    t2 = time.perf_counter()
    scored = score_run(run.out_dir, binset.anno_file)
    t3 = time.perf_counter()
    n = len(ctx.sentences)
    stages = {"bin_create_s": t1 - t0, "infer_s": t2 - t1, "bert_metric_s": t3 - t2}
    in_documents = (f" --context document --seq_len {seq_len} --window_overlap {words_in.window_overlap}"
                    if words_in.context == "document" else "")
    command = (f"python bin_create.py --input_file {ctx.input_file} --model_name_from_hub {ctx.model_dir} "
               f"--save_dir BIN --buckets {shown}{in_documents} && python -m infer --model {model_file} --input "
               f"\"{','.join('BIN/bert_bin_<ts>/' + name for name in ctx.spec.input_names)}\" --output OUT "
               f"--outfmt BIN --batchsize {batchsize}{f' --max_tokens {max_tokens}' if max_tokens else ''} "
               "&& python bert_metric.py --result_dir OUT/<ts> "
               "--anno_file BIN/bert_bin_<ts>.anno")
    return {"model_file": str(model_file), "buckets": shown, "batchsize": batchsize, "max_tokens": max_tokens,
            "sentences": n,
            "samples": run.total, "stages": stages, "total_s": sum(stages.values()),
            "sentences_per_s": n / sum(stages.values()),
            "infer_sentences_per_s": n / stages["infer_s"], "throughput_ais_bench": run.summary["throughput"],
            "f1": scored.result["f1"], "work_dir": str(flow_dir), "command": command}
