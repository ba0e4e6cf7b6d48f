"""Map study runs over an executor: a local process pool (default) or a Dask cluster; resumable.

Each finished run is written at once to OUT/runs/<id>.json (atomically), so an interrupted study
loses at most the runs in flight and a restart skips what is there. Runs execute in fresh
processes with one BLAS thread each (Dask's workers do the same by default), so a run's numbers
do not depend on the executor.
"""

from __future__ import annotations

import json
import os
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any, Callable

from slam.study.spec import RunSpec

# What a worker process must see before NumPy starts: one thread per run, like Dask's nannies.
SINGLE_THREAD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _task(run: RunSpec, work: str) -> dict[str, Any]:
    """What an executor calls: one run (module-level so that it pickles)."""
    from slam.study.runner import execute_run

    return execute_run(run, work)


def result_path(out: Path, run: RunSpec) -> Path:
    """Where a finished run's result lives."""
    return out / "runs" / f"{run.id}.json"


def load_done(out: Path, runs: list[RunSpec]) -> dict[str, dict[str, Any]]:
    """Results of runs already finished in an earlier (possibly interrupted) invocation."""
    done = {}
    for run in runs:
        p = result_path(out, run)
        if p.is_file():
            try:
                done[run.id] = json.loads(p.read_text())
            except json.JSONDecodeError:
                continue  # half-written by a crash before atomic writes: run it again
    return done


def _save(out: Path, res: dict[str, Any]) -> None:
    from slam.io.text import write_text_atomic

    write_text_atomic(out / "runs" / f"{res['id']}.json", json.dumps(res, indent=1, sort_keys=True) + "\n")


class Progress:
    """`study: 12/40 runs, 3 failed, 0.4 runs/min, ETA 01:10:00` lines on stderr."""

    def __init__(self, total: int, done: int, enabled: bool) -> None:
        self.total, self.done, self.failed, self.enabled = total, done, 0, enabled
        self.t0, self.new = time.perf_counter(), 0

    def step(self, ok: bool, name: str) -> None:
        """One run finished."""
        self.done += 1
        self.new += 1
        self.failed += not ok
        if not self.enabled:
            return
        el = time.perf_counter() - self.t0
        rate = self.new / el if el > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else float("nan")
        eta_s = time.strftime("%H:%M:%S", time.gmtime(eta)) if eta == eta else "?"
        print(f"study: {self.done}/{self.total} runs ({name}{'' if ok else ' FAILED'}), {self.failed} failed, "
              f"{60 * rate:.1f} runs/min, ETA {eta_s}", file=sys.stderr, flush=True)


def run_all(runs: list[RunSpec], out: Path, workers: int = 2, dask: str | None = None,
            progress: bool = True) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """Execute the runs not yet done; returns (results by id, errors by id)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "runs").mkdir(exist_ok=True)
    results = load_done(out, runs)
    todo = [r for r in runs if r.id not in results]
    prog = Progress(len(runs), len(results), progress)
    if progress and results:
        print(f"study: {len(results)} of {len(runs)} runs already done (resuming)", file=sys.stderr)
    errors: dict[str, str] = {}
    work = str(out / "work")

    def finished(run: RunSpec, res: dict[str, Any] | None, err: BaseException | None) -> None:
        if err is None and res is not None:
            _save(out, res)
            results[run.id] = res
        else:
            errors[run.id] = f"{type(err).__name__}: {err}"
        prog.step(err is None, run.id)

    if todo:
        if dask:
            _run_dask(todo, work, dask, workers, finished)
        else:
            _run_pool(todo, work, workers, finished)
    return results, errors


def _run_pool(todo: list[RunSpec], work: str, workers: int,
              finished: Callable[[RunSpec, dict | None, BaseException | None], None]) -> None:
    import multiprocessing as mp

    saved = {k: os.environ.get(k) for k in SINGLE_THREAD_ENV}
    os.environ.update(SINGLE_THREAD_ENV)  # inherited by the spawned workers before they import NumPy
    try:
        with ProcessPoolExecutor(max_workers=max(1, workers), mp_context=mp.get_context("spawn")) as pool:
            futures = {pool.submit(_task, r, work): r for r in todo}
            try:
                pending = set(futures)
                while pending:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for f in done:
                        exc = f.exception()
                        finished(futures[f], None if exc else f.result(), exc)
            except KeyboardInterrupt:
                for f in futures:
                    f.cancel()
                raise
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _run_dask(todo: list[RunSpec], work: str, address: str, workers: int,
              finished: Callable[[RunSpec, dict | None, BaseException | None], None]) -> None:
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError as exc:
        from slam.errors import InputError
        raise InputError("--dask needs the 'distributed' package: pip install 'slam[study]'") from exc
    cluster = None
    if address == "local":
        # processes, one thread each: runs hold the GIL in Python between NumPy calls
        cluster = LocalCluster(n_workers=max(1, workers), threads_per_worker=1, processes=True,
                               dashboard_address=None, env=dict(SINGLE_THREAD_ENV))
        client = Client(cluster)
    else:
        client = Client(address)
    try:
        futures = {client.submit(_task, r, work, key=f"study-{r.id}", pure=False): r for r in todo}
        for fut in as_completed(list(futures)):
            run = futures[fut]
            try:
                res, err = fut.result(), None
            except Exception as exc:  # the run's own error, re-raised by Dask
                res, err = None, exc
            finished(run, res, err)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
