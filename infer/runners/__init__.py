"""Runners behind one interface (Polygraphy style): activate / infer / deactivate."""
from .base import BaseRunner, TensorMeta
from .onnxrt import OrtRunner, SessionFromOnnx, physical_cores, providers_for_device

__all__ = ["BaseRunner", "TensorMeta", "OrtRunner", "SessionFromOnnx", "physical_cores", "providers_for_device"]
