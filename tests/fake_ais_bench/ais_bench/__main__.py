"""`python -m ais_bench`: ait's ais_bench (components/benchmark, 2024) as far as our flow touches it.

Each rule is named after the real code it mirrors:
- path_security_check.FileStat.check_linux_permission: --model, each --input path and every entry
  of an input folder must not be a soft link nor group/other-writable; an existing --output too.
- io_oprations.get_files_count_per_batch: files per run = first input tensor size / first file size
  (an error when it does not divide); get_narray_from_files_list: a size mismatch is an error.
- session.set_dynamic_dims: --dymDims must be one of the model's gears (and is required for a model
  with dynamic dims).
- list_split / PADDING_INFER_FAKE_FILE: a short last run is padded with its first file, not written.
- save_tensors_to_file: outputs `<first input file name up to its first dot>_<k>.<ext>`.
- summary: OUTPUT/<output_dirname or timestamp>_summary.json beside the result folder.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import stat
import sys
import time

import numpy as np


class AisBenchError(Exception):
    pass


def check_path(path: str, perm: str) -> None:
    """FileStat.check_linux_permission(perm) with strict_permission=True."""
    if not os.path.lexists(path):
        if perm == "write":
            return
        raise AisBenchError(f"path: {path} not exist, please check if file or dir is exist")
    if os.path.islink(path):
        raise AisBenchError(f"path :{path} is a soft link, not supported, please import file(or directory) directly")
    if stat.S_IMODE(os.stat(path).st_mode) & (stat.S_IWGRP | stat.S_IWOTH):
        kind = "import" if perm == "read" else "export"
        raise AisBenchError(f"The file {path} is group writable, or is others writable, as {kind} file(or "
                            "directory) permission should not be over 0o755(rwxr-xr-x)")


def natural_sort(names):
    return sorted(sorted(names), key=lambda key: [int(c) if c.isdigit() else c.lower()
                                                   for c in re.split("([0-9]+)", key)])


def files_of_dir(folder: str) -> list[str]:
    """utils.get_fileslist_from_dir: every entry is checked; .bin/.npy files in natural order."""
    files = []
    for name in os.listdir(folder):
        path = os.path.join(folder, name)
        check_path(path, "read")
        if os.path.isfile(path) and name.lower().endswith((".bin", ".npy")):
            files.append(path)
    if not files:
        raise AisBenchError(f"{folder} of input args not find valid file,valid file format:[*.npy *.NPY *.bin *.BIN]")
    return natural_sort(files)


def real_shapes(model: dict, dym_dims: str | None) -> list[list[int]]:
    """The input shapes for this run: the static shapes, or the gear that --dymDims picks."""
    shapes = [list(i["shape"]) for i in model["inputs"]]
    dynamic = any(d < 0 for s in shapes for d in s)
    if not dynamic:
        if dym_dims:
            raise AisBenchError("--dymDims given but the model has no dynamic dims")
        return shapes
    if not dym_dims:
        raise AisBenchError("the model has dynamic dims (gears): --dymDims is required")
    given = {}
    for part in dym_dims.split(";"):
        name, _, dims = part.partition(":")
        given[name] = [int(v) for v in dims.split(",")]
    names = [i["name"] for i in model["inputs"]]
    if sorted(given) != sorted(names) or any(len(given[n]) != len(s) for n, s in zip(names, shapes)):
        raise AisBenchError(f"--dymDims {dym_dims} does not name the model inputs {names}")
    for n, s in zip(names, shapes):
        if any(d >= 0 and d != g for d, g in zip(s, given[n])):
            raise AisBenchError(f"--dymDims {dym_dims}: {n} has fixed dims {s}")
    picked = [g for n, s in zip(names, shapes) for d, g in zip(s, given[n]) if d < 0]
    if picked not in [list(p) for p in model["dynamic_dims"]]:
        raise AisBenchError(f"set_dynamic_dims failed: {dym_dims} is not a gear of the model "
                            f"(gears {model['dynamic_dims']})")
    return [given[n] for n in names]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="ais_bench")
    parser.add_argument("--model", "-m", required=True)
    parser.add_argument("--input", "-i", default=None)
    parser.add_argument("--output", "-o", default=None)
    parser.add_argument("--output_dirname", default=None)
    parser.add_argument("--outfmt", default="BIN", choices=["NPY", "BIN", "TXT"])
    parser.add_argument("--batchsize", type=int, default=None)
    parser.add_argument("--loop", type=int, default=1)
    parser.add_argument("--warmup_count", type=int, default=1)
    parser.add_argument("--device", type=int, default=0)
    parser.add_argument("--dymDims", default=None)
    parser.add_argument("--display_all_summary", default=False)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except AisBenchError as err:
        print(f"[ERROR] {err}", flush=True)
        return 1


def run(args) -> int:
    check_path(args.model, "read")
    if not args.model.endswith(".om"):
        raise AisBenchError(f"om path:{args.model} is illegal. Please check.")
    with open(args.model, encoding="utf-8") as handle:
        model = json.load(handle)
    inputs = args.input.split(",") if args.input else []
    for path in inputs:
        check_path(path, "read")
    if args.output:
        check_path(args.output, "write")
    if len(inputs) != len(model["inputs"]):
        raise AisBenchError(f"Invalid args. args input dir num:{len(inputs)} not equal to model inputs num:"
                            f"{len(model['inputs'])}")
    shapes = real_shapes(model, args.dymDims)
    sizes = [int(np.prod(s)) * 8 for s in shapes]  # int64 inputs
    fileslist = [files_of_dir(folder) for folder in inputs]
    first_size = os.path.getsize(fileslist[0][0])
    if first_size == 0 or sizes[0] % first_size:
        raise AisBenchError(f"arg0 tensorsize: {sizes[0]} filesize: {first_size} not match")
    per_run = sizes[0] // first_size
    count = len(fileslist[0])
    prefix = None
    if args.output:
        prefix = os.path.join(args.output, args.output_dirname or time.strftime("%Y_%m_%d-%H_%M_%S"))
        os.makedirs(prefix, 0o750, exist_ok=True)
        print(f"[INFO] output path:{prefix}", flush=True)

    import onnxruntime as ort

    session = ort.InferenceSession(model["onnx"], providers=["CPUExecutionProvider"])
    names = [i["name"] for i in model["inputs"]]
    times, filesinfo = [], {}
    for start in range(0, count, per_run):
        batch = [files[start:start + per_run] for files in fileslist]
        real = len(batch[0])
        feeds = {}
        for name, files, size, shape in zip(names, batch, sizes, shapes):
            files = files + [files[0]] * (per_run - len(files))  # PADDING_INFER_FAKE_FILE: the batch's first file
            data = b"".join(open(f, "rb").read() for f in files)
            if len(data) != size:
                raise AisBenchError(f"ndata size:{len(data)} not match {size}")
            feeds[name] = np.frombuffer(data, dtype="<i8").reshape(shape)
        began = time.perf_counter()
        (logits,) = session.run(None, feeds)
        times.append((time.perf_counter() - began) * 1000)
        if prefix is None:
            continue
        for j, rows in enumerate(np.array_split(logits, per_run, axis=0)[:real]):
            stem = os.path.basename(batch[0][j]).split(".")[0]
            out = os.path.join(prefix, f"{stem}_0.{args.outfmt.lower()}")
            if args.outfmt == "NPY":
                np.save(out, rows)
            else:
                rows.astype(np.float32).tofile(out)
            filesinfo[start + j] = {"infiles": [files[j] for files in batch], "outfiles": [out]}
    mean = float(np.mean(times))
    batchsize = args.batchsize or shapes[0][0]
    summary = {"filesinfo": filesinfo, "args": vars(args), "NPU_compute_time": {"mean": mean, "count": len(times)},
               "H2D_latency": {}, "D2H_latency": {}, "throughput": 1000 * batchsize / mean,
               "npu_compute_time_list": times, "pid": os.getpid()}
    if prefix is not None:
        with open(prefix + "_summary.json", "w", encoding="utf-8") as handle:
            json.dump(summary, handle)
    print(f"[INFO] throughput 1000*batchsize.mean({batchsize})/NPU_compute_time.mean({mean}): "
          f"{summary['throughput']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
