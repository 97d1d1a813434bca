"""Scale-out under accelerate, and mixed precision.

A run on N processes is the same command under a launcher::

    accelerate launch --config_file conf/accelerate/ddp.yaml -m alignzoo run algo=ppo ...   # N GPUs, NCCL
    torchrun --nproc_per_node 2 -m alignzoo run algo=ppo ...                                 # 2 CPU processes, gloo

accelerate (``PartialState``) reads the launcher's environment, joins the process group and gives each rank its
device. The training code then has data-parallel (DDP) semantics, implemented at the few places every loop passes
through, so built-in algorithms and plugins alike train data-parallel without wrapping their modules:

- rank 0 alone writes: loggers, ``record.json``, Hydra's ``.hydra/`` folder and log file; it builds pipeline
  stages first while the other ranks wait, then they reuse them from the stage cache; it alone evaluates;
- every optimizer starts from rank 0's weights (broadcast when ``training.Stepper`` is built), and gradients are
  averaged over ranks before clipping in ``Stepper.step``, so all ranks take identical steps;
- batches are sharded: each rank takes its contiguous slice of each global (micro-)batch (``shard``); rollouts too,
  and a shard samples with the global batch's random numbers (``RowShard``), so N ranks sample exactly what one
  process samples; batch statistics (advantage whitening, token means, logged metrics) are reduced over ranks.

With N ranks and the same global batch, the loss trajectory equals one process's up to float rounding. One
process without a launcher takes none of these paths: the plain PyTorch code runs exactly as before.

Precision: ``run.precision=auto`` is bf16 autocast on a GPU that supports it (or what ``accelerate launch
--mixed_precision`` asked for) and fp32 on the CPU; ``fp16`` adds a gradient scaler and needs a GPU.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any, Iterator, Optional, Sequence

import torch

from alignzoo.errors import AlignzooError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def launched_world_size() -> int:
    """Processes the launcher started (``WORLD_SIZE`` from torchrun / accelerate launch); 1 without one."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def env_rank() -> int:
    return int(os.environ.get("RANK", "0") or 0)


def is_main_process() -> bool:
    """Rank 0 (or the only process): the one that writes records, logs, checkpoints and evaluates."""
    return env_rank() == 0


@dataclass
class Engine:
    """This process's place in the run: rank, world size, device type and precision. One process: world = 1."""

    world_size: int = 1
    rank: int = 0
    local_rank: int = 0
    precision: str = "fp32"  # the resolved precision: fp32 | bf16 | fp16
    device_type: str = "cpu"  # cpu | cuda

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # -- precision ------------------------------------------------------------------------------------------------
    def autocast(self) -> Any:
        """Mixed-precision autocast for forwards (a no-op context in fp32)."""
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=_DTYPES[self.precision])

    def no_autocast(self) -> Any:
        """Backward passes run outside autocast (their ops already follow the forward's dtypes)."""
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, enabled=False)

    def grad_scaler(self) -> Optional[torch.amp.GradScaler]:
        """A loss scaler for fp16 (bf16 and fp32 need none)."""
        return torch.amp.GradScaler(self.device_type) if self.precision == "fp16" else None

    # -- sharding -------------------------------------------------------------------------------------------------
    def rows(self, n: int, what: str = "train.batch_size") -> slice:
        """This rank's contiguous slice of ``n`` rows; ``n`` must split evenly over the ranks."""
        if n % self.world_size:
            raise AlignzooError(
                f"{what}: a global batch of {n} does not split evenly over {self.world_size} processes; make it a "
                f"multiple of {self.world_size} (with grad accumulation: batch_size / grad_accum must be one)")
        size = n // self.world_size
        return slice(self.rank * size, (self.rank + 1) * size)

    def shard(self, batch: Any, what: str = "train.batch_size") -> Any:
        """This rank's slice of a global batch (a list, tuple or tensor of rows); the batch itself in one process."""
        if not self.distributed:
            return batch
        return batch[self.rows(len(batch), what)]

    # -- collectives (each a no-op in one process) ----------------------------------------------------------------
    def barrier(self) -> None:
        if self.distributed:
            torch.distributed.barrier()

    @contextlib.contextmanager
    def main_first(self) -> Iterator[None]:
        """Rank 0 runs the block first (e.g. builds pipeline stages); the others wait, then run it (reusing)."""
        if self.distributed and not self.is_main:
            self.barrier()
        try:
            yield
        finally:
            if self.distributed and self.is_main:
                self.barrier()

    def broadcast_(self, tensors: Sequence[torch.Tensor]) -> None:
        """Overwrite ``tensors`` with rank 0's values (DDP does this when it wraps a module)."""
        tensors = [t for t in tensors]
        if not self.distributed or not tensors:
            return
        from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

        flat = _flatten_dense_tensors([t.detach() for t in tensors])
        torch.distributed.broadcast(flat, src=0)
        with torch.no_grad():
            for t, v in zip(tensors, _unflatten_dense_tensors(flat, tensors)):
                t.copy_(v)

    def average_gradients_(self, params: Sequence[torch.nn.Parameter]) -> None:
        """Replace every gradient by its mean over ranks (one all-reduce of a flat buffer)."""
        grads = [p.grad for p in params if p.grad is not None]
        if not self.distributed or not grads:
            return
        from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

        flat = _flatten_dense_tensors(grads)
        torch.distributed.all_reduce(flat)
        flat /= self.world_size
        for g, v in zip(grads, _unflatten_dense_tensors(flat, grads)):
            g.copy_(v)

    @property
    def comm_device(self) -> torch.device:
        """Where small collective buffers live: this rank's GPU under NCCL, else the CPU (gloo)."""
        return torch.device("cuda", self.local_rank) if self.device_type == "cuda" else torch.device("cpu")

    def _reduce(self, values: list[float]) -> list[float]:
        t = torch.tensor(values, dtype=torch.float64, device=self.comm_device)
        torch.distributed.all_reduce(t)
        return t.tolist()

    def mean(self, metrics: dict[str, float], weight: float = 1.0) -> dict[str, float]:
        """The mean over ranks of ``weight * value`` per metric (every rank passes the same keys). With equal shards
        and ``weight=1`` it is the global batch's mean of per-example means."""
        if not self.distributed:
            return dict(metrics)
        keys = sorted(metrics)
        sums = self._reduce([weight * _float(metrics[k]) for k in keys])
        return {k: s / self.world_size for k, s in zip(keys, sums)}

    def sum(self, value: float) -> float:
        return self._reduce([float(value)])[0] if self.distributed else value

    def token_share(self, mask: torch.Tensor) -> float:
        """``world * local tokens / global tokens``: multiply a rank's token-mean loss by it, and the mean over
        ranks of the gradients is the gradient of the global batch's token mean (DDP averages per rank)."""
        if not self.distributed:
            return 1.0
        local = float(mask.sum())
        total = self.sum(local)
        return self.world_size * local / max(total, 1.0)

    def gather_rows(self, tensor: torch.Tensor) -> torch.Tensor:
        """All ranks' rows of a tensor (equal shapes on every rank), in rank order: the global batch's tensor."""
        if not self.distributed:
            return tensor
        parts = [torch.empty_like(tensor) for _ in range(self.world_size)]
        torch.distributed.all_gather(parts, tensor.contiguous())
        return torch.cat(parts, 0)

    def all_true(self, flags: torch.Tensor) -> bool:
        """Whether ``flags`` holds on every rank's rows."""
        live = float((~flags.bool()).sum())
        return self.sum(live) == 0 if self.distributed else live == 0

    def row_shard(self, global_rows: int) -> Optional["RowShard"]:
        """How this rank samples its rows of a global batch of rollouts (None in one process)."""
        return RowShard(self, self.rows(global_rows), global_rows) if self.distributed else None


def _float(value: Any) -> float:
    return float(value.detach()) if isinstance(value, torch.Tensor) else float(value)


@dataclass
class RowShard:
    """This rank's rows of a global batch being sampled. One process draws each step's tokens from one uniform
    per row (``rollout.draw``); a shard draws the uniforms of the whole global batch (every rank's generator is in
    the same state) and keeps its rows, so it samples exactly the tokens one process would. Decoding stops when
    every rank's rows have ended."""

    engine: Engine
    rows: slice
    global_rows: int

    def sample(self, probs: torch.Tensor, generator: Optional[torch.Generator]) -> torch.Tensor:
        from alignzoo import rollout

        return rollout.draw(probs, rollout.uniforms(self.global_rows, generator, probs.device)[self.rows])

    def all_done(self, done: torch.Tensor) -> bool:
        return self.engine.all_true(done)


_CURRENT = Engine()


def current() -> Engine:
    """The engine of the job this process is running (world size 1 outside a launcher)."""
    return _CURRENT


def init_process_group(device: str = "auto") -> None:
    """Join the launcher's process group through accelerate (gloo on CPU, NCCL on GPUs); nothing without one."""
    if launched_world_size() <= 1:
        return
    from accelerate import PartialState

    cpu = device == "cpu" or not torch.cuda.is_available()
    state = PartialState(cpu=cpu)
    if not cpu:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0") or 0))
    if state.num_processes != launched_world_size():
        raise AlignzooError(f"accelerate found {state.num_processes} process(es) but the launcher started "
                            f"{launched_world_size()}; launch with `accelerate launch` or `torchrun`")


def resolve_precision(precision: str, device: torch.device) -> str:
    """``run.precision`` for this device: auto -> the launcher's ``--mixed_precision``, else bf16 on a GPU that
    has it, else fp32 (the CPU)."""
    if precision == "auto":
        asked = os.environ.get("ACCELERATE_MIXED_PRECISION", "no")
        if device.type == "cuda":
            if asked in ("bf16", "fp16"):
                return asked
            return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
        return "fp32"
    if precision == "fp16" and device.type != "cuda":
        raise AlignzooError(f"run.precision=fp16 needs a GPU (the device is {device}); use run.precision=auto "
                            "(fp32 on the CPU) or bf16")
    return precision


def setup(*, device: str = "auto", precision: str = "auto") -> Engine:
    """The engine for one job: joins the process group (under a launcher), picks the device and precision."""
    global _CURRENT
    for var, name in (("ACCELERATE_USE_FSDP", "FSDP"), ("ACCELERATE_USE_DEEPSPEED", "DeepSpeed")):
        if os.environ.get(var, "false").lower() == "true":
            raise AlignzooError(
                f"accelerate was launched with {name}, which alignzoo does not support yet: it trains data-parallel "
                "(every rank holds the whole model; gradients are averaged). Launch with conf/accelerate/ddp.yaml, "
                "and save memory with LoRA (model.lora.r=8) or bf16 (run.precision=bf16)")
    init_process_group(device)
    world = launched_world_size()
    local = int(os.environ.get("LOCAL_RANK", "0") or 0)
    dev = job_device(device, local if world > 1 else None)
    _CURRENT = Engine(world_size=world, rank=env_rank() if world > 1 else 0, local_rank=local,
                      precision=resolve_precision(precision, dev), device_type=dev.type)
    return _CURRENT


def reset() -> None:
    """Back to one process (after a job, so that the next job in this process starts clean)."""
    global _CURRENT
    _CURRENT = Engine(world_size=_CURRENT.world_size, rank=_CURRENT.rank, local_rank=_CURRENT.local_rank)


def _cuda_problem(index: Optional[int]) -> Optional[str]:
    if not torch.cuda.is_available():
        return f"this torch ({torch.__version__}) sees no CUDA GPU (torch.cuda.is_available() is False)"
    count = torch.cuda.device_count()
    if index is not None and index >= count:
        return f"this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}"
    return None


def _mps_problem(index: Optional[int]) -> Optional[str]:
    mps = getattr(torch.backends, "mps", None)
    return None if mps is not None and mps.is_available() else "this machine has no Apple MPS device"


#: device kinds ``run.device`` may name, each with what makes it unusable on this machine
_DEVICE_KINDS = {"cpu": lambda index: None, "cuda": _cuda_problem, "mps": _mps_problem}


def device_problem(name: str) -> Optional[str]:
    """Why ``run.device=name`` cannot run here, with the fix (as a ``run.`` validation problem), or None."""
    if name == "auto":
        return None
    kind, colon, index = name.partition(":")
    if kind not in _DEVICE_KINDS or (colon and not index.isdigit()):
        return f"device must be auto, cpu, cuda, cuda:N or mps (got {name!r}); e.g. run.device=cpu"
    problem = _DEVICE_KINDS[kind](int(index) if colon else None)
    if problem is None:
        return None
    return f"device={name}: {problem}; use run.device=cpu (or run.device=auto, the GPU when there is one)"


def job_device(name: str, local_rank: Optional[int] = None) -> torch.device:
    """``run.device`` as a torch device; ``auto`` is this rank's GPU when there is one, else the CPU. A device this
    machine does not have stops the job with the message validation gives (config validation reports it first)."""
    problem = device_problem(name)
    if problem:
        raise AlignzooError(f"run.{problem}")
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device(f"cuda:{local_rank}" if local_rank is not None else "cuda")
        return torch.device("cpu")
    if name == "cuda" and local_rank is not None:
        return torch.device(f"cuda:{local_rank}")
    return torch.device(name)


# -- the launcher and Hydra -------------------------------------------------------------------------------------------

def hydra_overrides(args: list[str]) -> list[str]:
    """Extra Hydra overrides for this process: ranks other than 0 write no ``.hydra/`` folder and no log file."""
    if launched_world_size() <= 1 or env_rank() == 0:
        return []
    if any(a in ("-m", "--multirun") or a.startswith("hydra.mode=") for a in args):
        raise AlignzooError("a sweep (-m) cannot run under a distributed launcher: launch one job per "
                            "`accelerate launch`, or sweep with a Hydra launcher (launcher=slurm) around them")
    logging = [] if any(a.startswith("hydra/job_logging=") for a in args) else ["hydra/job_logging=stdout"]
    return ["hydra.output_subdir=null", *logging]


def shared_job_dir(job_dir: Any) -> Any:
    """Rank 0's job directory on every rank (Hydra names it by the time, which differs between processes); a rank
    whose own, empty directory differs removes it."""
    from pathlib import Path

    engine_world = launched_world_size()
    if engine_world <= 1:
        return job_dir
    init_process_group()
    box = [str(job_dir)]
    torch.distributed.broadcast_object_list(box, src=0)
    shared = Path(box[0])
    own = Path(job_dir)
    if env_rank() != 0 and own.resolve() != shared.resolve():
        with contextlib.suppress(OSError):
            own.rmdir()  # only when empty: it never holds anything a user wrote
    return shared
