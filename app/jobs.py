"""Generation jobs: they belong to the project, not to the page (like ComfyUI's server-side queue).

A job runs in its own thread, so a reload or a closed tab does not stop it; any page that opens the project
follows it (`Job.follow`) and sees the clips already finished. At most `--concurrency` jobs run at once, whatever
their engine, each on its own generator of its engine's pool (`worker_generators`: one pipeline object per worker
sharing the model weights, so one job's scheduler state, interrupt flag or step count never reaches another) and with
its own cancel token.
"""

from __future__ import annotations

import copy
import logging
import queue
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from app.engines import Generator

logger = logging.getLogger(__name__)


@dataclass
class GenerationUpdate:
    """One step of a generation: its status line, a newly finished clip, all clips so far, and at the end the
    outputs. `state` is "running", "done", "stopped" or "failed"."""

    status: str
    clip: str | None = None
    clips: tuple[str, ...] = ()
    final: str | None = None
    record: str | None = None
    state: str = "running"


@dataclass
class Job:
    """One generation of one project. Updates are kept, so a page that attaches late sees where it stands."""

    project_id: str
    out_dir: Path
    engine: str = ""  # the engine it runs on (its registry name)
    cancel: threading.Event = field(default_factory=threading.Event)
    updates: list[GenerationUpdate] = field(default_factory=list)
    finished: bool = False
    _changed: threading.Condition = field(default_factory=threading.Condition)

    @property
    def latest(self) -> GenerationUpdate | None:
        with self._changed:
            return self.updates[-1] if self.updates else None

    def publish(self, update: GenerationUpdate) -> None:
        with self._changed:
            if not update.clips and self.updates:  # status-only updates keep the clips known so far
                update.clips = self.updates[-1].clips
            self.updates.append(update)
            self._changed.notify_all()

    def finish(self) -> None:
        with self._changed:
            self.finished = True
            self._changed.notify_all()

    def follow(self, poll: float = 1.0) -> Iterator[GenerationUpdate]:
        """The latest update, then each new one as it comes, until the job ends."""
        seen = 0
        with self._changed:
            if self.updates:
                seen = len(self.updates) - 1
        while True:
            with self._changed:
                while seen >= len(self.updates) and not self.finished:
                    self._changed.wait(poll)
                batch, seen, done = self.updates[seen:], len(self.updates), self.finished
            yield from batch
            if done and seen == len(self.updates):
                return


Work = Callable[[Generator, Job], Iterator[GenerationUpdate]]  # runs on a worker's generator, as `job`


class JobRunner:
    """Runs generation jobs on a fixed pool of generators per engine (one per worker); at most `workers` jobs at once
    whatever their engine, and one job per project at a time."""

    def __init__(self, pools: Mapping[str, list[Generator]] | list[Generator]) -> None:
        if not isinstance(pools, Mapping):
            pools = {"": list(pools)}  # one engine
        self.workers = max((len(generators) for generators in pools.values()), default=0)
        self._slots = threading.Semaphore(max(1, self.workers))
        self._free: dict[str, queue.Queue[Generator]] = {}
        for engine, generators in pools.items():
            self._free[engine] = queue.Queue()
            for generator in generators:
                self._free[engine].put(generator)
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    def job(self, project_id: str) -> Job | None:
        """The project's running (or last) job in this server process."""
        with self._lock:
            return self._jobs.get(project_id)

    def running(self, project_id: str) -> Job | None:
        job = self.job(project_id)
        return job if job is not None and not job.finished else None

    def submit(self, project_id: str, out_dir: Path, work: Work, engine: str | None = None) -> Job:
        """Start `work(generator, job)` on one of `engine`'s generators (None: the first engine) as the project's job
        (it checks `job.cancel` and may `job.publish` progress lines); the same generation already running is
        returned as it is (attach), a different one is refused."""
        if engine is None:
            engine = next(iter(self._free), "")
        if engine not in self._free:
            raise ValueError(
                f"the {engine} engine is not loaded in this studio; choose one of {', '.join(self._free)}"
            )
        with self._lock:
            current = self._jobs.get(project_id)
            if current is not None and not current.finished:
                if current.out_dir == out_dir:
                    return current
                raise JobBusy(
                    "a generation with other settings is already running in this project; press Stop (its finished "
                    "clips are kept) or wait for it, then Generate again"
                )
            job = Job(project_id, out_dir, engine)
            self._jobs[project_id] = job
        thread = threading.Thread(target=self._run, args=(job, work), name=f"generate-{project_id}", daemon=True)
        thread.start()
        return job

    def _run(self, job: Job, work: Work) -> None:
        generator, free = None, self._free[job.engine]
        slot = self._slots.acquire(blocking=False)
        try:
            if not slot:
                job.publish(GenerationUpdate(f"Waiting for a free worker: {self.workers} generation(s) running…"))
            while not slot:
                if job.cancel.is_set():
                    job.publish(GenerationUpdate("Stopped before it started.", state="stopped"))
                    return
                slot = self._slots.acquire(timeout=0.5)
            generator = free.get()  # a slot is held: one of the engine's `workers` generators is free
            for update in work(generator, job):
                job.publish(update)
        except ValueError as err:  # a user-facing problem found while running (the message says what to do)
            job.publish(GenerationUpdate(f"Generation failed: {err}", state="failed"))
        except Exception as err:  # noqa: BLE001 - the job must end with a message, whatever broke
            logger.exception("generation job of project %s failed", job.project_id)
            job.publish(
                GenerationUpdate(
                    f"Generation failed ({type(err).__name__}: {err}); finished clips are kept, details are in the "
                    "server log",
                    state="failed",
                )
            )
        finally:
            if generator is not None:
                free.put(generator)
            if slot:
                self._slots.release()
            job.finish()


class JobBusy(ValueError):
    """The project already runs another generation."""


def worker_generators(generator: Generator | None, workers: int) -> list[Generator]:
    """`workers` generators for the job pool: the loaded one, then copies sharing its model weights.

    A diffusers pipeline keeps per-call state on itself (scheduler timesteps, `_interrupt`, guidance scale); each
    copy gets its own pipeline object and its own scheduler, the modules (weights) are shared. A generation engine
    that wraps a pipeline (`engine.pipe`) is copied with a copy of its pipeline."""
    if generator is None:
        return []
    return [generator] + [_worker_copy(generator) for _ in range(max(1, workers) - 1)]


def _worker_copy(generator: Generator) -> Generator:
    pipe = getattr(generator, "pipe", None)
    if pipe is not None and isinstance(getattr(pipe, "components", None), dict):
        engine = copy.copy(generator)
        engine.pipe = _pipeline_copy(pipe)
        return engine
    if isinstance(getattr(generator, "components", None), dict):
        return _pipeline_copy(generator)
    logger.warning("%s cannot be copied per worker; jobs will share it", type(generator).__name__)
    return generator


def _pipeline_copy(pipe):
    """A new pipeline object on the same modules, with its own scheduler and its own metadata."""
    components = pipe.components
    clone = type(pipe)(**{**components, "scheduler": copy.deepcopy(components["scheduler"])})
    clone.mvideo_metadata = dict(getattr(pipe, "mvideo_metadata", {}) or {})
    clone._progress_bar_config = dict(getattr(pipe, "_progress_bar_config", {}))
    return clone
