"""Offline batch inference with ais_bench's flags and output layout.

`python -m infer` runs an ONNX model on ONNX Runtime (or hands an `.om` model to the real
ais_bench) over the `.bin` folders that preprocess writes; see `infer.offline.run_offline`.
"""
