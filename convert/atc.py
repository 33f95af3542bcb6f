"""ONNX -> Ascend OM: build the ATC command line (and the matching ais_bench call), run it if ATC is here.

bash convert_om.sh --model X.onnx --bs N --seq_len L --soc_version Ascend310P3 [--output NAME] [--dry-run]
bash convert_om.sh --model X.onnx --bs N --buckets 32,64,128 --soc_version Ascend310P3   (dynamic gears)

Everything it prints is a bash script (notes are `#` comments): the ATC line, then the ais_bench
runs that fit the model (per-gear input folders, one shared `--output_dirname`), then the
bert_metric.py line that scores the whole result. A successful ATC run also leaves a record
`<output>.atc.json` beside the .om, from which `python -m infer` takes the OM's batch and gears.

Input names come from the ONNX graph itself, so a model without token_type_ids gets a two-input
--input_shape. Gears use ATC's ND dynamic dims: `-1` for the sequence axis in --input_shape and
one `--dynamic_dims` profile per bucket, a value for every -1 (ATC accepts 2 to 100 profiles).
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import click

from common.atomic import staging_dir, write_json
from common.errors import InputFileError, ToolMissingError, UserError, handle_errors
from common.paths import CANN_SET_ENV, ROOT
from common.cli import CONTEXT_SETTINGS, parse_lengths
from preprocess.binfile import GEARS_SUBDIR


# --precision_mode values ATC documents (CANN 6 to 8).
PRECISION_MODES = ("allow_fp32_to_fp16", "force_fp16", "must_keep_origin_dtype", "allow_mix_precision",
                   "allow_mix_precision_fp16", "force_fp32", "cube_fp16in_fp32out")
# With --optypelist_for_implmode the mode must name one of these (not the *_for_all variants).
IMPL_MODES = ("high_precision", "high_performance")
MIN_GEARS, MAX_GEARS = 2, 100
RECORD_FORMAT = "atc-record/1"
RECORD_SUFFIX = ".atc.json"


def record_path(om_path) -> Path:
    """`model.om` -> `model.atc.json`: what convert_om.sh built it with."""
    om_path = Path(om_path)
    return om_path.with_name(om_path.name[:-3] + RECORD_SUFFIX if om_path.name.endswith(".om")
                             else om_path.name + RECORD_SUFFIX)


@dataclass(frozen=True)
class AtcPlan:
    argv: tuple[str, ...]
    output: str  # ATC's --output: the OM path without its .om suffix
    input_names: tuple[str, ...]
    batch_size: int
    seq_lens: tuple[int, ...]  # one for a static model, one per gear otherwise
    gears: bool

    def command_line(self) -> str:
        """The command as a user would type it (shape lists in double quotes, as ATC's docs write them)."""
        parts = []
        for arg in self.argv:
            key, sep, value = arg.partition("=")
            if sep and (";" in value or key in ("--input_shape", "--dynamic_dims")):
                parts.append(f'{key}="{value}"')
            else:
                parts.append(shlex.quote(arg))
        return " ".join(parts)

    def script_lines(self, *, bin_dir: str | None = None, out_dir: str | None = None) -> list[str]:
        """What to run after ATC, as lines a user can paste into bash: ais_bench once per gear (each on its
        own per-gear input folders, all into one `--output_dirname`), then bert_metric.py on that folder.
        Paths go through $BIN_DIR (bin_create.py's bert_bin_<ts> folder) and $OUT_DIR."""
        om = self.output + ".om"
        run_name = Path(self.output).name
        lines = [f"BIN_DIR={shlex.quote(bin_dir)}" if bin_dir else
                 "# set BIN_DIR to bin_create.py's bert_bin_<ts> folder" +
                 (f" (made with --buckets {','.join(map(str, self.seq_lens))})" if self.gears else ""),
                 f"OUT_DIR={shlex.quote(out_dir)}" if out_dir else "# set OUT_DIR to the folder for the results"]

        def ais_bench(folder: str, dims: str | None) -> str:
            inputs = ",".join(f"{folder}/{name}" for name in self.input_names)
            line = (f'python3 -m ais_bench --model {shlex.quote(om)} --input "{inputs}" --output "$OUT_DIR" '
                    f"--output_dirname {shlex.quote(run_name)} --outfmt NPY --batchsize {self.batch_size}")
            return line + (f' --dymDims "{dims}"' if dims else "")

        if self.gears:
            lines.append("# ais_bench: one run per gear, each on the samples of its length, all into one folder")
            for seq in self.seq_lens:
                folder = f"$BIN_DIR/{GEARS_SUBDIR}/{seq}"
                dims = ";".join(f"{name}:{self.batch_size},{seq}" for name in self.input_names)
                lines.append(f'test ! -d "{folder}" || {ais_bench(folder, dims)}')
        else:
            lines.append(f"# ais_bench (the inputs must all be {self.seq_lens[0]} tokens: bin_create.py --seq_len "
                         f"{self.seq_lens[0]} without --buckets)")
            lines.append(ais_bench("$BIN_DIR", None))
        metric = ROOT / "bert_metric.py"  # absolute: the lines work from any folder
        lines.append("# score the whole result")
        lines.append(f'python3 {shlex.quote(str(metric))} --result_dir "$OUT_DIR/{run_name}" '
                     f'--anno_file "$BIN_DIR.anno"')
        return lines

    def record(self, om_path) -> dict:
        return {"format": RECORD_FORMAT, "om": Path(om_path).name, "batch_size": self.batch_size,
                "input_names": list(self.input_names), "seq_lens": list(self.seq_lens), "gears": self.gears,
                "atc": self.command_line()}


def check_gears(buckets) -> tuple[int, ...] | None:
    """ATC gears from `--buckets` (already a sorted tuple of lengths): ATC's limit on their number."""
    if not buckets:
        return None
    values = tuple(sorted(set(int(b) for b in buckets)))
    if not MIN_GEARS <= len(values) <= MAX_GEARS:
        raise UserError(f"--buckets {','.join(map(str, values))}: ATC takes {MIN_GEARS} to {MAX_GEARS} gears "
                        f"(for a single length use --seq_len)")
    return values


def plan_atc(*, model, batch_size: int, soc_version: str, seq_len: int | None = None, buckets=None,
             output: str | None = None, precision_mode: str = "allow_fp32_to_fp16",
             op_select_implmode: str = "high_precision", optypelist_for_implmode: str = "Gelu",
             log: str = "error") -> AtcPlan:
    """The ATC argv for `model` with static (seq_len) or geared (buckets) sequence length."""
    # onnx_io imports onnx (a second): deferred so that `bash convert_om.sh --help` answers at once
    from . import onnx_io

    model = Path(model)
    buckets = check_gears(buckets)
    if (seq_len is None) == (buckets is None):
        raise UserError("give exactly one of --seq_len (static shape) and --buckets (dynamic gears)")
    if batch_size < 1 or (seq_len is not None and seq_len < 1):
        raise UserError("--bs and --seq_len must be positive")
    if not re.fullmatch(r"Ascend[0-9A-Za-z]+", soc_version or ""):
        raise UserError(f"--soc_version {soc_version!r}: expected an Ascend SoC name such as Ascend310P3 "
                        "(npu-smi info shows it)")
    if precision_mode not in PRECISION_MODES:
        raise UserError(f"--precision_mode {precision_mode!r}: one of {', '.join(PRECISION_MODES)}")
    if op_select_implmode not in IMPL_MODES:
        raise UserError(f"--op_select_implmode {op_select_implmode!r}: one of {', '.join(IMPL_MODES)}")

    graph = onnx_io.load(model, load_external_data=False)
    inputs = onnx_io.graph_inputs(graph)
    del graph
    for name, dims in inputs:
        if len(dims) != 2:
            raise InputFileError(model, f"input {name!r} has dims {dims}; expected (batch, sequence)")
        if isinstance(dims[0], int) and dims[0] != batch_size:
            raise UserError(f"{model}: input {name!r} has a fixed batch of {dims[0]}, not --bs {batch_size}")
        if isinstance(dims[1], int):
            if buckets:
                raise UserError(f"{model}: input {name!r} has a fixed sequence length {dims[1]}; gears need "
                                "the dynamic export (before simplify)")
            if dims[1] != seq_len:
                raise UserError(f"{model}: input {name!r} has a fixed sequence length {dims[1]}, not --seq_len {seq_len}")

    names = tuple(name for name, _ in inputs)
    seq = "-1" if buckets else str(seq_len)
    shape = ";".join(f"{name}:{batch_size},{seq}" for name in names)
    if output is None:
        output = str(model.with_name(f"{model.stem}_bs{batch_size}" + ("_gears" if buckets else f"_seq{seq_len}")))
    elif output.endswith(".om"):
        output = output[:-3]  # ATC appends .om itself
    argv = ["atc", f"--model={model}", "--framework=5", f"--output={output}", "--input_format=ND",
            f"--input_shape={shape}"]
    if buckets:
        # One value per -1 in --input_shape, i.e. the gear's length once per input.
        argv.append("--dynamic_dims=" + ";".join(",".join([str(b)] * len(names)) for b in buckets))
    argv += [f"--soc_version={soc_version}", f"--op_select_implmode={op_select_implmode}",
             f"--optypelist_for_implmode={optypelist_for_implmode}", f"--precision_mode={precision_mode}",
             f"--log={log}"]
    return AtcPlan(argv=tuple(argv), output=output, input_names=names, batch_size=batch_size,
                   seq_lens=buckets or (seq_len,), gears=bool(buckets))


def find_atc() -> str:
    path = shutil.which("atc")
    if path is None:
        raise ToolMissingError(f"atc was not found on PATH; set up CANN first: source {CANN_SET_ENV}")
    return path


def run_atc(plan: AtcPlan) -> list[Path]:
    """Run ATC with its output in a temporary folder; move the .om file(s) in place only on success."""
    atc = find_atc()
    final = Path(plan.output)
    with staging_dir(final) as stage:
        argv = [atc] + [f"--output={stage / final.name}" if a.startswith("--output=") else a for a in plan.argv[1:]]
        code = subprocess.run(argv, check=False).returncode
        if code != 0:
            raise UserError(f"atc exited with code {code} (its messages are above); nothing written")
        made = sorted(stage.glob("*.om"))
        if not made:
            raise UserError("atc reported success but wrote no .om file; nothing written")
        moved = []
        for path in made:
            target = final.parent / path.name
            os.replace(path, target)
            # ais_bench (ait, 2024) refuses a model file that group or others can write
            os.chmod(target, stat.S_IMODE(target.stat().st_mode) & ~0o022)
            write_json(record_path(target), plan.record(target))
            moved.append(target)
        return moved


@click.command(context_settings=CONTEXT_SETTINGS)
@click.option("--model", required=True, type=click.Path(path_type=Path), help="ONNX model (fixed with fix_onnx.py).")
@click.option("--bs", "batch_size", required=True, type=click.IntRange(1), help="Batch size.")
@click.option("--seq_len", default=None, type=click.IntRange(1), help="Static sequence length.")
@click.option("--buckets", default=None, help="Sequence-length gears instead of --seq_len, e.g. 32,64,128.")
@click.option("--soc_version", required=True, help="e.g. Ascend310P3 (see npu-smi info).")
@click.option("--output", default=None, help="OM path without .om (default: beside the model).")
@click.option("--precision_mode", default="allow_fp32_to_fp16", show_default=True, type=click.Choice(PRECISION_MODES))
@click.option("--op_select_implmode", default="high_precision", show_default=True, type=click.Choice(IMPL_MODES))
@click.option("--optypelist_for_implmode", default="Gelu", show_default=True)
@click.option("--bin_dir", default=None, help="bin_create.py's bert_bin_<ts> folder, filled into the printed ais_bench lines.")
@click.option("--out_dir", default=None, help="Results folder (ais_bench --output), filled into the printed lines.")
@click.option("--dry-run", "dry_run", is_flag=True, help="Print the commands (ATC, ais_bench, bert_metric.py) and exit.")
@handle_errors
def main(dry_run, bin_dir, out_dir, buckets, **kwargs):
    """Convert an ONNX model to an Ascend OM with ATC (or print the command with --dry-run).

    The output is a bash script: ATC, then ais_bench per gear, then bert_metric.py."""
    plan = plan_atc(buckets=parse_lengths(buckets) if buckets else None, **kwargs)
    if not dry_run:
        find_atc()  # before printing anything: without ATC the one line of output is the error
    click.echo(plan.command_line())
    if not dry_run:
        written = run_atc(plan)
        click.echo(f"# wrote {', '.join(map(str, written))} (and its {RECORD_SUFFIX} record)")
    for line in plan.script_lines(bin_dir=bin_dir, out_dir=out_dir):
        click.echo(line)


if __name__ == "__main__":
    # convert_om.sh says what the user typed, so that --help shows `bash convert_om.sh`, not `python -m`.
    sys.exit(main(prog_name=os.environ.get("CONVERT_OM_PROG") or None))
