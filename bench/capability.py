"""What this machine can run of the OpenVINO paths, and why a path is skipped where it cannot.

ov_bf16 needs native BF16 and ov_int8_nncf int8 dot-product units (VNNI / AMX), as `common.cpu` tells
them (its `$NER_CPU_FLAGS` plays an older CPU); every ov_* path needs the openvino package and
ov_int8_nncf the nncf package. A path that cannot run here is skipped with its reason in the JSON:
a fact about the machine, not an error.
"""
from __future__ import annotations

import importlib.util
from typing import Iterable, Optional

from common.cpu import BF16_FLAGS, VNNI_FLAGS, CpuCapabilities, detect
from common.errors import ToolMissingError
from convert.quantize_nncf import NNCF_REQUIREMENT
from runners.openvino import import_openvino

from .paths import OPENVINO_PATHS


def detect_capabilities() -> tuple[CpuCapabilities, Optional[str]]:
    """(this CPU's capabilities, with OpenVINO's own where it is installed; why OpenVINO cannot run, or None)."""
    try:
        ov = import_openvino()
    except ToolMissingError as err:
        return detect(), str(err)
    return detect(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")), None


def skip_reasons(paths: Iterable[str], capabilities: CpuCapabilities, openvino_missing: Optional[str]) -> dict:
    """{path: why it cannot run here} for the paths among `paths` that cannot."""
    reasons = {}
    for name in paths:
        if name not in OPENVINO_PATHS:
            continue
        if openvino_missing:
            reasons[name] = openvino_missing
        elif name == "ov_bf16" and not capabilities.bf16:
            reasons[name] = (f"this CPU has no native BF16 ({' / '.join(sorted(BF16_FLAGS))}; found: "
                             f"{capabilities.describe()})")
        elif name == "ov_int8_nncf" and not capabilities.vnni_int8:
            reasons[name] = (f"this CPU has no int8 dot-product units ({' / '.join(sorted(VNNI_FLAGS))}; found: "
                             f"{capabilities.describe()})")
        elif name == "ov_int8_nncf" and importlib.util.find_spec("nncf") is None:
            reasons[name] = f"the nncf package is not installed (pip install {NNCF_REQUIREMENT})"
    return reasons


def describe(capabilities: CpuCapabilities) -> dict:
    return {"flags": sorted(capabilities.flags & (BF16_FLAGS | VNNI_FLAGS)),
            "openvino": sorted(capabilities.openvino) if capabilities.openvino is not None else None,
            "bf16": capabilities.bf16, "vnni_int8": capabilities.vnni_int8}
