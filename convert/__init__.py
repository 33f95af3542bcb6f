"""HF checkpoint -> ONNX -> (onnxsim, fp16-safe fix) -> Ascend OM.

Library functions take keyword arguments and raise `common.errors.UserError` subclasses;
each module's Click command (`python -m convert.<module>`) only parses, calls and prints.
Heavy libraries (torch, transformers, onnx, onnxruntime, onnxsim) are imported inside
functions so that `--help` and the ATC command builder start instantly.
"""
