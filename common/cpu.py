"""What this CPU can do fast, and the precision that follows: BF16 and VNNI-INT8 where present, f32 elsewhere.

Two sources, both injectable so a test can play a CPU without them:
- the kernel's CPU flags (/proc/cpuinfo; `$NER_CPU_FLAGS`, comma-separated, replaces them, e.g. to
  simulate an older CPU in a subprocess);
- OpenVINO's own `OPTIMIZATION_CAPABILITIES` of its CPU device (e.g. BF16, INT8, FP32), passed in by
  whoever holds an `openvino.Core` (this module does not import OpenVINO).

BF16 needs avx512_bf16 or amx_bf16 (emulating it would be slower than f32, which is why asking for it
on a CPU without them is an error, not a silent slowdown). INT8 runs everywhere, but only avx512_vnni,
avx_vnni or amx_int8 give it the int8 dot-product units it is meant for.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

from .errors import UserError

BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
VNNI_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})
CPUINFO = Path("/proc/cpuinfo")
FLAGS_ENV = "NER_CPU_FLAGS"

PRECISIONS = ("auto", "f32", "bf16")


@dataclass(frozen=True)
class CpuCapabilities:
    """CPU flags, and OpenVINO's capabilities of its CPU device (None: not asked)."""

    flags: frozenset[str]
    openvino: Optional[frozenset[str]] = None

    @property
    def bf16(self) -> bool:
        """Native BF16 (the flags say so, and OpenVINO agrees when it was asked)."""
        return bool(self.flags & BF16_FLAGS) and (self.openvino is None or "BF16" in self.openvino)

    @property
    def vnni_int8(self) -> bool:
        """int8 dot-product instructions (VNNI / AMX)."""
        return bool(self.flags & VNNI_FLAGS)

    def describe(self) -> str:
        found = sorted(self.flags & (BF16_FLAGS | VNNI_FLAGS)) or ["no BF16/VNNI flags"]
        return ", ".join(found)


def cpu_flags(cpuinfo: Path = CPUINFO) -> frozenset[str]:
    """The `flags` of the first processor in /proc/cpuinfo ($NER_CPU_FLAGS replaces them); empty if unreadable."""
    override = os.environ.get(FLAGS_ENV)
    if override is not None:
        return frozenset(flag.strip() for flag in override.split(",") if flag.strip())
    try:
        text = Path(cpuinfo).read_text(encoding="utf-8", errors="replace")
    except OSError:  # not Linux: no flags known, so nothing beyond f32 is promised
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def detect(openvino_capabilities: Optional[Iterable[str]] = None, cpuinfo: Path = CPUINFO) -> CpuCapabilities:
    """This machine's capabilities; pass OpenVINO's `OPTIMIZATION_CAPABILITIES` when you have them."""
    caps = frozenset(openvino_capabilities) if openvino_capabilities is not None else None
    return CpuCapabilities(flags=cpu_flags(cpuinfo), openvino=caps)


def resolve_precision(requested: str, capabilities: CpuCapabilities) -> tuple[str, Optional[str]]:
    """`auto` / `f32` / `bf16` -> the precision to run and a one-line note when the choice needs one.

    auto: bf16 where the CPU has it natively, else f32 with a note. bf16 on a CPU without it: UserError."""
    if requested not in PRECISIONS:
        raise UserError(f"--precision {requested!r}: use one of {', '.join(PRECISIONS)}")
    if requested == "f32":
        return "f32", None
    if capabilities.bf16:
        return "bf16", None
    if requested == "bf16":
        raise UserError("--precision bf16: this CPU has no native BF16 (needs avx512_bf16 or amx_bf16; "
                        f"found: {capabilities.describe()}); use --precision f32")
    return "f32", "note: this CPU has no native BF16 (avx512_bf16 / amx_bf16): running f32"


def int8_note(capabilities: CpuCapabilities) -> Optional[str]:
    """A one-line note when INT8 will run without int8 dot-product units (it still runs, just slower)."""
    if capabilities.vnni_int8:
        return None
    return ("note: this CPU has no VNNI (avx512_vnni / avx_vnni / amx_int8): the INT8 model runs, "
            "but without int8 dot-product units it may be no faster than f32")
