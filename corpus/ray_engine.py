"""The Ray engine: the same shards as a Ray Data pipeline, written by the driver.

    shard specs --map_batches(encode, tasks)--> encoded shards --map_batches(ShardLabeller, actor pool)-->
    Parquet bytes + counts --(driver)--> the same files as the local engine, written atomically

Each stage calls the functions the local engine calls (`corpus.shard.encode_shard` / `label_shard`),
so rows and counts are identical. One row of the dataset is one shard and there are as many blocks
as shards, so every actor gets work. Actors hold one runner session each and ask for a fraction of
a CPU: with a whole CPU each, on a small machine the encode tasks would starve and the pipeline stall.
A user error inside a stage (a malformed line) travels back as data and is raised by the driver as
the same one-line error as in the local engine; shards already written stay.
"""
from __future__ import annotations

import json
import os
import pickle
import socket
from dataclasses import asdict
from functools import lru_cache
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from common.errors import UserError
from common.model_spec import read_model_spec
from preprocess.pipeline import load_tokenizer

from .inputs import ShardSpec
from .job import Job
from .local import build_engine
from .shard import encode_shard, label_shard, make_engine, write_shard

ROOT = Path(__file__).resolve().parents[1]
CONNECT_TIMEOUT_S = 10
ACTOR_CPUS = 0.5
ENCODE_CPUS = 0.25


@lru_cache(maxsize=2)
def _encoder(model_dir: str, context: str, window_overlap: Optional[int]):
    """An Engine without a runner: the encode stage needs only its tokenizer (cached per worker)."""
    return make_engine(None, read_model_spec(model_dir), load_tokenizer(Path(model_dir)), context, window_overlap)


def encode_batch(batch: dict, model_dir: str, context: str = "sentence", window_overlap: Optional[int] = None) -> dict:
    payloads, errors = [], []
    for spec_json in batch["spec"]:
        try:
            shard = encode_shard(_encoder(model_dir, context, window_overlap), ShardSpec(**json.loads(spec_json)))
            payloads.append(pickle.dumps(shard, protocol=pickle.HIGHEST_PROTOCOL))
            errors.append("")
        except UserError as err:
            payloads.append(b"")
            errors.append(str(err))
    return {"spec": np.asarray(batch["spec"], dtype=object), "payload": np.asarray(payloads, dtype=object),
            "error": np.asarray(errors, dtype=object)}


class ShardLabeller:
    """One runner session per actor, kept for every shard the actor labels."""

    def __init__(self, model_dir: str, backend: str, onnx: Optional[str], threads: int):
        self.engine = build_engine(Path(model_dir), read_model_spec(model_dir), backend,
                                   Path(onnx) if onnx else None, threads, lambda m: None)

    def __call__(self, batch: dict) -> dict:
        parquets, counts = [], []
        for payload, error in zip(batch["payload"], batch["error"]):
            if error:
                parquets.append(b"")
                counts.append("")
                continue
            parquet, shard_counts = label_shard(self.engine, pickle.loads(payload))
            parquets.append(parquet)
            counts.append(json.dumps(shard_counts))
        return {"spec": np.asarray(batch["spec"], dtype=object), "error": np.asarray(batch["error"], dtype=object),
                "parquet": np.asarray(parquets, dtype=object), "counts": np.asarray(counts, dtype=object)}


def check_address(address: str) -> None:
    """A HOST:PORT that does not answer is a one-line error within CONNECT_TIMEOUT_S, not a long hang."""
    if address == "auto" or "://" in address:
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"--ray_address {address}: expected auto or HOST:PORT")
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as err:
        raise UserError(f"--ray_address {address}: no Ray cluster answers there ({err.strerror or err})") from None


def _start(address: Optional[str], workers: int):
    import ray  # heavy (a second or more): only the Ray engine pays for it

    env = {"env_vars": {"PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
                        "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}}
    if address is None:
        ray.init(num_cpus=max(2, workers), include_dashboard=False, log_to_driver=False, runtime_env=env,
                 configure_logging=False)
        return ray
    check_address(address)
    try:
        ray.init(address=address, log_to_driver=False, runtime_env=env, configure_logging=False)
    except (ConnectionError, RuntimeError, TimeoutError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"--ray_address {address}: cannot join the cluster ({first})") from None
    return ray


def run_ray(job: Job, progress, *, address: Optional[str], workers: int,
            log: Callable[[str], None] = lambda m: None) -> int:
    """Compute every missing shard on Ray; returns how many were computed."""
    pending = job.pending()
    if not pending:
        return 0
    if job.onnx is not None:  # export once here, not once per actor
        build_engine(job.model_dir, job.spec, job.backend, job.onnx, 1, log).runner.deactivate()
    ray = _start(address, workers)
    try:
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # the driver's one bar counts sentences
        context.print_on_execution_start = False
        cpus = int(ray.cluster_resources().get("CPU", 1))
        threads = max(1, cpus // max(1, workers))
        specs = [json.dumps(asdict(spec)) for spec in pending]
        by_id = {spec.shard: spec for spec in pending}
        dataset = (ray.data.from_items([{"spec": s} for s in specs], override_num_blocks=len(specs))
                   .map_batches(encode_batch, batch_size=1,
                                fn_kwargs={"model_dir": str(job.model_dir), "context": job.context,
                                           "window_overlap": job.window_overlap},
                                num_cpus=ENCODE_CPUS, batch_format="numpy")
                   .map_batches(ShardLabeller, batch_size=1, batch_format="numpy", num_cpus=ACTOR_CPUS,
                                compute=ray.data.ActorPoolStrategy(size=workers),
                                fn_constructor_kwargs={"model_dir": str(job.model_dir), "backend": job.backend,
                                                       "onnx": str(job.onnx) if job.onnx else None,
                                                       "threads": threads}))
        for row in dataset.iter_rows():
            if row["error"]:
                raise UserError(row["error"])
            spec = by_id[json.loads(row["spec"])["shard"]]
            write_shard(job.shards_dir, spec.shard, row["parquet"], json.loads(row["counts"]))
            progress(spec.count)
    finally:
        ray.shutdown()
    return len(pending)
