"""A stand-in for CANN's `atc` (tests only): writes `<--output>.om` as the JSON "model" the fake
ais_bench reads, from the same flags (--model, --output, --input_shape, --dynamic_dims)."""
import json
import sys

flags = dict(arg[2:].split("=", 1) for arg in sys.argv[1:] if arg.startswith("--") and "=" in arg)
inputs = []
for part in flags["input_shape"].split(";"):
    name, _, dims = part.partition(":")
    inputs.append({"name": name, "shape": [int(d) for d in dims.split(",")]})
gears = [[int(v) for v in p.split(",")] for p in flags["dynamic_dims"].split(";")] if "dynamic_dims" in flags else []
with open(flags["output"] + ".om", "w", encoding="utf-8") as handle:
    json.dump({"fake_om": 1, "onnx": flags["model"], "inputs": inputs, "dynamic_dims": gears}, handle)
