"""Moved: a re-export shim until the lead removes it (nothing in the project should import it).

The encoder is `preprocess.encode`, the batch planner `preprocess.plan`, feeds `common.feeds`, the
in-process engine `engine.Engine`, the benchmark's FLOPs / memory / machine facts `bench.*`.
"""
from __future__ import annotations

from preprocess.encode import Rows, encode, label_names as split_labels
from preprocess.plan import BatchPolicy, batch_feed as make_feed, plan

__all__ = ["Rows", "encode", "split_labels", "BatchPolicy", "make_feed", "plan"]
