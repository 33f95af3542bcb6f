"""A stand-in for ait's ais_bench (`python -m ais_bench`) that enforces the real tool's input rules.

Used by the tests only (the fixture puts tests/fake_ais_bench on PYTHONPATH). The "OM" is a JSON
file: {"fake_om": 1, "onnx": "<path>.onnx", "inputs": [{"name": ..., "shape": [N, -1 or L]}, ...],
"dynamic_dims": [[L, L, L], ...]} (ATC's --dynamic_dims profiles, one value per -1); logits come
from ONNX Runtime on that .onnx, so scores are real. See __main__.py for the rules it follows.
"""
