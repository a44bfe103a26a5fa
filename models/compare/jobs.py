"""Running a comparison's training jobs, in this process or in a pool of worker processes.

A job is one network (data set, kind, seed) or one adding-problem run. Workers are spawned
with one torch thread each, and every job seeds itself, so the results do not depend on how
many workers ran them or in which order.
"""

from __future__ import annotations

import functools
import multiprocessing
import time
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from typing import Any

import torch
from tqdm import tqdm

from models.baselines import Baseline
from models.compare.adding import AddingOutcome, train_adding
from models.compare.experiment import CompareConfig
from models.data import Series, load
from models.networks import Kind
from models.train import TrainResult, train

DataJob = tuple[str, Kind, int]
AddingJob = tuple[Kind, int, int]


@functools.lru_cache(maxsize=8)
def series_of(name: str) -> Series:
    return load(name)


def _worker_init() -> None:
    torch.set_num_threads(1)


def _data_job(
    config: CompareConfig, baselines: dict[str, Baseline], dataset: str, kind: Kind, seed: int
) -> tuple[TrainResult, float]:
    started = time.perf_counter()
    result = train(
        series_of(dataset),
        config.training(dataset, kind, seed),
        progress=False,
        baselines=baselines,
    )
    return result, time.perf_counter() - started


def _adding_job(config: CompareConfig, kind: Kind, length: int, seed: int) -> AddingOutcome:
    return train_adding(
        kind,
        length,
        seed,
        hidden=config.adding_hidden,
        epochs=config.adding_epochs,
        steps_per_epoch=5 if config.quick else 50,
    )


def run_jobs(
    config: CompareConfig,
    data_jobs: list[DataJob],
    adding_jobs: list[AddingJob],
    baselines: dict[str, dict[str, Baseline]],
    *,
    progress: bool,
) -> tuple[dict[DataJob, tuple[TrainResult, float]], dict[AddingJob, AddingOutcome]]:
    """Every job's result, keyed by the job; ``baselines`` per data set, fitted once."""
    data_results: dict[DataJob, tuple[TrainResult, float]] = {}
    adding_results: dict[AddingJob, AddingOutcome] = {}
    total = len(data_jobs) + len(adding_jobs)
    with tqdm(total=total, disable=not progress, desc="compare", unit="run") as bar:
        if config.jobs <= 1:
            for job in data_jobs:
                data_results[job] = _data_job(config, baselines[job[0]], *job)
                bar.update()
            for job_a in adding_jobs:
                adding_results[job_a] = _adding_job(config, *job_a)
                bar.update()
            return data_results, adding_results
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(config.jobs, context, initializer=_worker_init) as pool:
            # The longest runs (long adding sequences) first, so no worker idles at the end.
            adding_futures: dict[Future[AddingOutcome], AddingJob] = {
                pool.submit(_adding_job, config, *job_a): job_a
                for job_a in sorted(adding_jobs, key=lambda j: -j[1])
            }
            data_futures: dict[Future[tuple[TrainResult, float]], DataJob] = {
                pool.submit(_data_job, config, baselines[job[0]], *job): job for job in data_jobs
            }
            every: list[Future[Any]] = [*adding_futures, *data_futures]
            for future in as_completed(every):
                if future in adding_futures:
                    adding_results[adding_futures[future]] = future.result()
                else:
                    data_results[data_futures[future]] = future.result()
                bar.update()
    return data_results, adding_results
