"""PyTorch runner: the checkpoint itself behind the runner interface, to compare ONNX paths against.

Loaded in float32 (a float16 checkpoint is cast up) with the eager attention that the ONNX
export traces, so both paths compute the same graph. `torch` is imported in `activate()` only.
`TorchRunner.from_model` wraps a model already in memory (the exporter checks the model it traced).
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Optional

import numpy as np

from common.errors import InputFileError
from common.model_spec import OUTPUT_NAME, ModelSpec, read_model_spec

from .base import BaseRunner, TensorMeta


class TorchRunner(BaseRunner):
    """Runs a Hugging Face token-classification checkpoint folder with PyTorch (CPU)."""

    def __init__(self, model_dir, name: Optional[str] = None, threads: Optional[int] = None,
                 attn_implementation: str = "eager", *, spec: Optional[ModelSpec] = None, model=None):
        super().__init__(name or f"torch[{Path(model_dir).name}]")
        self.spec = spec or read_model_spec(model_dir, weights=True)
        self.threads = threads
        self.attn_implementation = attn_implementation
        self._given_model = model  # a model in memory: activate() uses it instead of loading the folder
        self.model = None

    @classmethod
    def from_model(cls, model, spec: ModelSpec, name: Optional[str] = None) -> "TorchRunner":
        """A runner over `model` (a loaded float32 token classifier in eval mode) described by `spec`."""
        return cls(spec.model_dir, name=name or f"torch[{Path(spec.model_dir).name}]", spec=spec, model=model)

    def activate_impl(self) -> None:
        # torch and transformers take seconds to import: only a runner that really runs needs them
        import torch
        from transformers import AutoModelForTokenClassification

        if self.threads:
            torch.set_num_threads(self.threads)
        if self._given_model is not None:
            self.model = self._given_model
            return
        try:
            model = AutoModelForTokenClassification.from_pretrained(
                str(self.spec.model_dir), dtype=torch.float32, attn_implementation=self.attn_implementation, use_safetensors=True)
        except (OSError, ValueError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise InputFileError(self.spec.model_dir, f"cannot load the checkpoint ({first})") from None
        self.model = model.float().eval()

    def get_input_metadata_impl(self) -> list[TensorMeta]:
        return [TensorMeta(name, np.dtype(np.int64), ("batch", "sequence")) for name in self.spec.input_names]

    def get_output_metadata_impl(self) -> list[TensorMeta]:
        return [TensorMeta(OUTPUT_NAME, np.dtype(np.float32), ("batch", "sequence", self.spec.num_labels))]

    def infer_impl(self, feed_dict: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch  # already loaded by activate(); deferred here for the same reason

        with torch.inference_mode():
            inputs = {name: torch.from_numpy(np.ascontiguousarray(array)) for name, array in feed_dict.items()}
            logits = self.model(**inputs, return_dict=True).logits
        return {OUTPUT_NAME: logits.float().numpy()}

    def deactivate_impl(self) -> None:
        self.model = None
