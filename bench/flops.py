"""Useful work of an encoder forward pass, counted from the real word-piece counts (padding excluded)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from common.errors import UserError
from common.model_spec import ENCODER_SIZE_NAMES, encoder_size


@dataclass(frozen=True)
class EncoderShape:
    layers: int
    hidden: int
    intermediate: int
    labels: int

    @classmethod
    def from_config(cls, config: Mapping) -> "EncoderShape":
        """From a checkpoint's config.json, whatever the family calls the sizes (DistilBERT: n_layers, dim, ...)."""
        sizes = {size: encoder_size(config, size) for size in ("layers", "hidden", "intermediate")}
        missing = [ENCODER_SIZE_NAMES[size][0] for size, value in sizes.items() if value is None]
        if missing:
            raise UserError(f"config.json has no {', '.join(missing)}: cannot count the encoder's FLOPs")
        return cls(sizes["layers"], sizes["hidden"], sizes["intermediate"], len(config["id2label"]))

    def flops_per_token(self) -> int:
        """Dense layers only: 2 x (QKV 3h^2 + output h^2 + FFN 2hi) per layer, + the classifier."""
        h, i = self.hidden, self.intermediate
        return self.layers * 2 * (4 * h * h + 2 * h * i) + 2 * h * self.labels

    def flops(self, row_lengths: np.ndarray) -> int:
        """FLOPs of rows of real lengths n (padding excluded): n x flops_per_token + the attention
        products QK^T and PV, 2 x 2 x n^2 x h per layer."""
        n = np.asarray(row_lengths, dtype=np.int64)
        return int(n.sum() * self.flops_per_token() + self.layers * 4 * self.hidden * int((n * n).sum()))


FLOPS_FORMULA = ("per model row of n real word pieces: layers x (n x 2 x (4h^2 + 2hi) + 4 n^2 h) + "
                 "2 n h labels; padding excluded")
