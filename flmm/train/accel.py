"""The accelerate side of :class:`flmm.train.Trainer`: its Accelerator, built the same way for every run."""

from __future__ import annotations

import warnings

from flmm.train.config import TrainConfig
from flmm.train.precision import resolve_precision, training_device

#: DDP's stride warning for a 1x1 convolution's weight (sizes ``[o, i, 1, 1]``), whose gradient arrives
#: channels-last, e.g. after SAM's channels-first LayerNorm permutes its input: the strides differ only
#: in the two size-1 dimensions, so the memory layout is the same and the bucket copy is the one DDP
#: always does (pytorch/pytorch#157862, #47163). Other stride mismatches still warn.
SPURIOUS_STRIDE_WARNING = (
    r"Grad strides do not match bucket view strides[\s\S]*grad\.sizes\(\) = \[\d+, \d+, 1, 1\]"
)


def make_accelerator(config: TrainConfig):
    """The :class:`accelerate.Accelerator` of a :class:`~flmm.train.Trainer` run of ``config``: CPU
    processes over gloo when there is no accelerator device, the config's precision (``"auto"`` resolved
    for this hardware) and gradient accumulation, DDP's ``find_unused_parameters``."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, GradientState
    from accelerate.utils import DistributedDataParallelKwargs

    # Without an accelerator device, `cpu=True` is what lets a torchrun-style launch
    # (`accelerate launch --multi_gpu --num_processes N` or `torchrun`) become a gloo MULTI_CPU run;
    # otherwise every process would believe it is alone.
    device = training_device()
    warnings.filterwarnings("ignore", message=SPURIOUS_STRIDE_WARNING, category=UserWarning)
    kwargs = dict(
        cpu=device == "cpu",
        mixed_precision=resolve_precision(config.mixed_precision, device),
        gradient_accumulation_steps=config.grad_accum_steps,
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=config.find_unused_parameters)],
    )
    try:
        return Accelerator(**kwargs)
    except ValueError as e:
        # accelerate keeps process-wide singletons; a second Trainer in one process (several stages,
        # tests, notebooks) with another precision must reset them. The process group is kept.
        if "already been initialized" not in str(e):
            raise
        AcceleratorState._reset_state(reset_partial_state=False)
        GradientState._reset_state()
        return Accelerator(**kwargs)


def process_state():
    """This process's ``accelerate.PartialState`` in a launch (one process: index 0 of 1), decided as the
    trainer decides: on a machine without an accelerator the processes talk over gloo on the CPU."""
    from accelerate import PartialState

    return PartialState(cpu=training_device() == "cpu")
