"""The runner interface every backend implements (after Polygraphy's `BaseRunner`).

A runner is activated once (that is where the expensive session is built), then `infer`
is called with a feed dict of numpy arrays and returns a dict of numpy arrays. Feeds are
checked against the model's input metadata *before* running, so a wrong shape or dtype is
a `ValidationError` naming the input, not a backend stack trace. Each call's wall time in
milliseconds is kept in `inference_time` (last call) and `inference_times` (all calls).
`infer_many(feeds)` runs a sequence of feeds and yields their outputs in order: one by one here,
with several requests in flight where the backend has streams (OpenVINO), so that the caller's
work on one batch's outputs overlaps the next batch's run.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Iterable, Iterator, Mapping, Optional, Sequence, Union

import numpy as np

from common.errors import ValidationError

# A dimension is a fixed int, or a symbolic name / None for a dynamic axis.
Dim = Union[int, str, None]


@dataclass(frozen=True)
class TensorMeta:
    """Name, dtype and shape of one model input or output; dynamic dims are str or None."""

    name: str
    dtype: np.dtype
    shape: tuple[Dim, ...]

    @staticmethod
    def is_static(dim: Dim) -> bool:
        return isinstance(dim, int) and dim >= 0

    def fixed_dim(self, axis: int) -> Optional[int]:
        """The size of `axis` when the graph fixes it, else None."""
        if axis >= len(self.shape):
            return None
        dim = self.shape[axis]
        return dim if self.is_static(dim) else None

    def accepts_shape(self, shape: Sequence[int]) -> bool:
        if len(shape) != len(self.shape):
            return False
        return all(not self.is_static(d) or d == s for d, s in zip(self.shape, shape))

    def describe(self) -> str:
        dims = ",".join(str(d) if self.is_static(d) else (d or "?") for d in self.shape)
        return f"{self.name}: {np.dtype(self.dtype).name}[{dims}]"


class BaseRunner:
    """activate() / infer(feed) / deactivate(), also usable as a context manager."""

    def __init__(self, name: str):
        self.name = name
        self.is_active = False
        self.inference_time: Optional[float] = None  # ms, last infer() call
        self.inference_times: list[float] = []  # ms, every infer() call since activate()

    # -- to implement -----------------------------------------------------------------
    def activate_impl(self) -> None:
        raise NotImplementedError

    def get_input_metadata_impl(self) -> list[TensorMeta]:
        raise NotImplementedError

    def get_output_metadata_impl(self) -> list[TensorMeta]:
        raise NotImplementedError

    def infer_impl(self, feed_dict: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def deactivate_impl(self) -> None:
        raise NotImplementedError

    # -- public interface -------------------------------------------------------------
    def activate(self) -> "BaseRunner":
        if self.is_active:
            return self
        self.activate_impl()
        self.is_active = True
        self.inference_time = None
        self.inference_times = []
        return self

    def deactivate(self) -> None:
        if not self.is_active:
            return
        self.deactivate_impl()
        self.is_active = False

    def __enter__(self) -> "BaseRunner":
        return self.activate()

    def __exit__(self, exc_type, exc, tb) -> None:
        self.deactivate()

    def _require_active(self, what: str) -> None:
        if not self.is_active:
            raise RuntimeError(f"{self.name}: activate() the runner before {what}")

    def get_input_metadata(self) -> list[TensorMeta]:
        """Model inputs in graph order."""
        self._require_active("asking for input metadata")
        return self.get_input_metadata_impl()

    def get_output_metadata(self) -> list[TensorMeta]:
        self._require_active("asking for output metadata")
        return self.get_output_metadata_impl()

    def check_feed(self, feed_dict: Mapping[str, np.ndarray]) -> None:
        """Names, dtypes and shapes of a feed against the model's inputs; ValidationError on mismatch."""
        metas = {m.name: m for m in self.get_input_metadata()}
        missing = [n for n in metas if n not in feed_dict]
        extra = [n for n in feed_dict if n not in metas]
        if missing or extra:
            raise ValidationError(
                f"{self.name}: feed does not match the model inputs {list(metas)}"
                + (f"; missing {missing}" if missing else "") + (f"; unexpected {extra}" if extra else ""))
        for name, meta in metas.items():
            array = feed_dict[name]
            if np.dtype(array.dtype) != np.dtype(meta.dtype):
                raise ValidationError(f"{self.name}: input {name!r} is {array.dtype}, the model wants "
                                      f"{np.dtype(meta.dtype).name}")
            if not meta.accepts_shape(array.shape):
                raise ValidationError(f"{self.name}: input {name!r} has shape {tuple(array.shape)}, "
                                      f"the model wants {meta.describe()}")

    def infer_many(self, feeds: Iterable[Mapping[str, np.ndarray]],
                   check_inputs: bool = True) -> Iterator[dict[str, np.ndarray]]:
        """The outputs of each feed, in the feeds' order (here: one `infer` after the other)."""
        for feed in feeds:
            yield self.infer(feed, check_inputs=check_inputs)

    def infer(self, feed_dict: Mapping[str, np.ndarray], check_inputs: bool = True) -> dict[str, np.ndarray]:
        """Run once; outputs by name. The wall time of the backend call is recorded in ms."""
        self._require_active("infer()")
        if check_inputs:
            self.check_feed(feed_dict)
        start = time.perf_counter()
        outputs = self.infer_impl(feed_dict)
        self.inference_time = (time.perf_counter() - start) * 1000.0
        self.inference_times.append(self.inference_time)
        return outputs


def infer_in_order(runner, feeds: Iterable[Mapping[str, np.ndarray]],
                   check_inputs: bool = True) -> Iterator[dict[str, np.ndarray]]:
    """`runner.infer_many`, or one `infer(feed)` after the other for a bare object with only `infer`
    (the engine's tests drive it with such stand-ins)."""
    if hasattr(runner, "infer_many"):
        return runner.infer_many(feeds, check_inputs=check_inputs)
    return (runner.infer(feed) if check_inputs else runner.infer(feed, check_inputs=False) for feed in feeds)
