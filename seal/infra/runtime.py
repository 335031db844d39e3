"""Where the outer loop's inner loops run: in this process (`runtime=local`) or on a Ray pool
(`runtime=ray`).

The outer loop cuts its inner loops into fixed chunks of K (`seal.domains.knowledge.task.chunks`) and hands the
chunks to a runner, which yields `(chunk index, outputs)` as chunks finish; the outer loop writes
each chunk's records the moment it arrives. Only the driver writes the run folder, so the folder is
consistent whatever happens to the workers, and resume works as in the local runtime.

The Ray runner keeps a pool of workers (Ray actors), each with its own resident model: one per GPU
with `runtime.gpus_per_worker=1`, or one per `cpus_per_worker` CPUs. A worker opens the policy it
is asked for by path (a hub id, or the M-step's folder, which must be on storage every node sees)
and keeps it until a later round names another. When a worker dies (node lost, OOM-killed), the
chunk it was running is given to a fresh worker, up to `max_retries` times per chunk; a chunk's
records are written only when its result arrives, so nothing is lost and nothing is written twice.
Each chunk's seeds come from the config, so the records equal the local runtime's. A worker's session
starts with nothing cached: whatever an item is scored against travels with it (an E-step item carries
its context's recorded base, `seal.rl.protocols.Item`), so a worker never derives it again.

We use Ray for placement, process supervision and transport and keep only the queue here: Ray's
own task retries would re-run a chunk on the same restarted actor without telling us, and we want
the retry count in the log and a bounded, explicit failure.

What workers print reaches the driver (`log_to_driver`): warnings, log records and errors as lines
prefixed `(InnerLoopWorker pid=...)`, repeats folded by Ray's deduplication. Their progress bars
(the inner loop's training steps, weight loading) are drawn by the driver as Ray's distributed bars
(`ray.experimental.tqdm_ray`), beside the driver's own bar for the round, instead of arriving as a
terminal's redraws cut into lines (`seal.infra.ray_console`).
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal, get_args

from seal.infra.config import ConfigError
from seal.infra.ray_console import bars_to_driver

log = logging.getLogger("seal")
Runtime = Literal["local", "ray"]
RUNTIMES = get_args(Runtime)


@dataclass(frozen=True)
class RuntimeConfig:
    name: Runtime = "local"  # local | ray
    address: str | None = None  # ray: join this cluster ("auto", "ray://head:10001"); None: start a local one
    workers: int = 0  # ray: pool size; 0: one per GPU of the cluster if gpus_per_worker > 0, else per CPU slot
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0  # 1 on GPU clusters: one worker (one resident model) per GPU
    torch_threads: int = 0  # CPU threads per worker; 0: cpus_per_worker
    max_retries: int = 3  # per chunk, after the worker running it died


def validate(cfg: RuntimeConfig) -> None:
    if cfg.name not in RUNTIMES:
        raise ConfigError(f"runtime.name: unknown runtime '{cfg.name}' (choose {', '.join(RUNTIMES)})")
    if cfg.workers < 0 or cfg.cpus_per_worker <= 0 or cfg.gpus_per_worker < 0 or cfg.max_retries < 0:
        raise ConfigError(f"runtime: workers >= 0, cpus_per_worker > 0, gpus_per_worker >= 0 and max_retries >= 0 "
                          f"are required, got {cfg}")
    if cfg.name == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            raise ConfigError("runtime=ray needs Ray: pip install 'seal-rl[ray]'") from None


class LocalRunner:
    """Chunks run one after another on the driver's own session."""

    def progress(self, total: int, desc: str):
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=desc, disable=not total)

    def map(self, session, policy: str, round_: int, chunks: list[list]) -> Iterator[tuple[int, list[dict]]]:
        for i, items in enumerate(chunks):
            yield i, session.adapt_many(items)

    def close(self) -> None:
        pass


class InnerLoopWorker:
    """A Ray actor: one resident policy and its session; runs chunks of inner loops."""

    def __init__(self, domain, threads: int):
        import torch

        if threads > 0:
            torch.set_num_threads(threads)
        self.domain, self.key, self.session = domain, None, None

    def adapt_many(self, policy: str, round_: int, items: list) -> list[dict]:
        if self.key != (policy, round_):
            if self.session is not None:
                self.session.close()
            self.session, self.key = None, None  # a failed open must not leave the old policy's key
            self.session, self.key = self.domain.open(policy, round_), (policy, round_)
        return self.session.adapt_many(items)

    def pid(self) -> int:
        return os.getpid()


class RayRunner:
    """A pool of `InnerLoopWorker` actors fed from a queue of chunks, results in finishing order."""

    def __init__(self, cfg: RuntimeConfig, domain):
        import ray

        self.cfg, self.domain, self.ray = cfg, domain, ray
        if not ray.is_initialized():
            console = {"worker_process_setup_hook": bars_to_driver}
            if cfg.address:
                ray.init(address=cfg.address, log_to_driver=True, runtime_env=console)
            else:  # a private local cluster without the dashboard (its HTTP UI); Ray's own gRPC servers still
                # listen on all interfaces in Ray 2.60, guarded by Ray's token authentication (on by default)
                ray.init(include_dashboard=False, log_to_driver=True,
                         runtime_env={"env_vars": {"TOKENIZERS_PARALLELISM": "false"}, **console})
        self.actor = ray.remote(num_cpus=cfg.cpus_per_worker, num_gpus=cfg.gpus_per_worker,
                                max_restarts=0)(InnerLoopWorker)
        n = cfg.workers or self._slots()
        if n < 1:
            raise ConfigError(f"runtime=ray: the cluster has room for no worker of {cfg.cpus_per_worker} CPU(s) and "
                              f"{cfg.gpus_per_worker} GPU(s)")
        self.workers = [self._spawn() for _ in range(n)]
        self.retries = 0
        log.info("ray runtime: %d workers (%s CPU, %s GPU each)", n, cfg.cpus_per_worker, cfg.gpus_per_worker)

    def _slots(self) -> int:
        res = self.ray.cluster_resources()
        if self.cfg.gpus_per_worker > 0:
            return int(res.get("GPU", 0) // self.cfg.gpus_per_worker)
        return int(res.get("CPU", 0) // self.cfg.cpus_per_worker)

    def _spawn(self):
        return self.actor.remote(self.domain, self.cfg.torch_threads or max(1, int(self.cfg.cpus_per_worker)))

    def progress(self, total: int, desc: str):
        """The driver's bar for a round's inner loops, drawn with the workers' (`tqdm_ray`) so none overlap."""
        from ray.experimental import tqdm_ray

        return tqdm_ray.tqdm(total=total, desc=desc) if total else LocalRunner().progress(0, desc)

    def worker_pids(self) -> list[int]:
        return self.ray.get([w.pid.remote() for w in self.workers])

    def map(self, session, policy: str, round_: int, chunks: list[list]) -> Iterator[tuple[int, list[dict]]]:
        """`session` (the driver's) is not used: the workers open `policy` themselves."""
        from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError, RayTaskError

        pending: deque[int] = deque(range(len(chunks)))
        idle = list(self.workers)
        inflight: dict[Any, tuple[int, Any]] = {}
        tries = [0] * len(chunks)
        while pending or inflight:
            while pending and idle:
                w, i = idle.pop(), pending.popleft()
                inflight[w.adapt_many.remote(policy, round_, chunks[i])] = (i, w)
            [ref], _ = self.ray.wait(list(inflight), num_returns=1)
            i, w = inflight.pop(ref)
            try:
                outs = self.ray.get(ref)
            except RayTaskError as e:  # the inner loop itself raised: the same error as locally
                raise e.as_instanceof_cause() from None
            except (ActorDiedError, ActorUnavailableError, RayActorError) as e:
                tries[i] += 1
                self.retries += 1
                if tries[i] > self.cfg.max_retries:
                    raise RuntimeError(f"runtime=ray: chunk {i} lost its worker {tries[i]} times "
                                       f"(runtime.max_retries={self.cfg.max_retries}); last error: {e}") from None
                log.warning("ray runtime: a worker died running chunk %d (%s); retrying it on a new worker", i,
                            type(e).__name__)
                slot = next(k for k, x in enumerate(self.workers) if x is w)
                self.workers[slot] = fresh = self._spawn()
                idle.append(fresh)
                pending.appendleft(i)
                continue
            idle.append(w)
            yield i, outs

    def close(self) -> None:
        for w in self.workers:
            self.ray.kill(w)
        self.workers = []


def make_runner(cfg: RuntimeConfig, domain):
    validate(cfg)
    return RayRunner(cfg, domain) if cfg.name == "ray" else LocalRunner()
