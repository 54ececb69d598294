"""Loading the three parts of a pipeline: the frozen LMM, SAM and the trained mask head.

By default the shipped shapes-world model is used: ``flmm/assets/shapes/lmm`` (a Hugging Face LLaVA
folder), ``flmm/assets/shapes/sam`` (a ``SamModel`` folder) and ``flmm/assets/shapes/head`` (an
``FLMMHead.save_pretrained`` folder), located with :mod:`importlib.resources`.
"""

from __future__ import annotations

import importlib.resources
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from flmm.errors import ConfigError
from flmm.head.model import FLMMHead
from flmm.lmm.frozen import FrozenLMM

SHIPPED_PARTS = ("lmm", "sam", "head")


def shipped_model_dir(part: str) -> Path:
    """Folder of one part (``"lmm"``, ``"sam"`` or ``"head"``) of the shipped shapes-world model (may not
    exist)."""
    if part not in SHIPPED_PARTS:
        raise ConfigError(f"unknown part {part!r}; one of {SHIPPED_PARTS}")
    return Path(str(importlib.resources.files("flmm") / "assets" / "shapes" / part))


def shipped_model_available() -> bool:
    """True when all three shipped shapes-world folders hold a ``config.json``."""
    return all((shipped_model_dir(p) / "config.json").is_file() for p in SHIPPED_PARTS)


def _shipped_paths() -> dict[str, str]:
    missing = [p for p in SHIPPED_PARTS if not (shipped_model_dir(p) / "config.json").is_file()]
    if missing:
        where = ", ".join(str(shipped_model_dir(p)) for p in missing)
        raise ConfigError(
            f"the shipped shapes-world model is not installed (missing: {where}). Install an flmm release "
            "that ships it, or give your own mask head (Python: head=FOLDER_OR_REPO; CLI: --model), plus the "
            "LMM and SAM (lmm=/sam=, --lmm/--sam) when the head's config does not name reachable ones"
        )
    return {p: str(shipped_model_dir(p)) for p in SHIPPED_PARTS}


def _dtype(dtype: torch.dtype | str | None) -> torch.dtype | None:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    names = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16}
    names.update({"bfloat16": torch.bfloat16, "bf16": torch.bfloat16})
    if dtype not in names:
        raise ConfigError(f"unknown dtype {dtype!r}; use one of {sorted(names)}")
    return names[dtype]


def _load_sam(name: str, device: str | torch.device, local_only: bool | None):
    from transformers import SamModel

    from flmm.assets_path import resolve

    kw = {} if local_only is None else {"local_files_only": local_only}
    try:
        return SamModel.from_pretrained(resolve(name), **kw).to(device).eval()
    except (OSError, ValueError) as e:
        raise ConfigError(
            f"cannot load SAM {name!r}: {e}. Pass a local SamModel folder or a hub id in the cache "
            "(HF_HUB_OFFLINE=1 only finds cached models)"
        ) from e


@dataclass
class LoadedParts:
    lmm: FrozenLMM
    head: FLMMHead


def load_parts(
    head: str | os.PathLike | None = None,
    *,
    lmm: str | os.PathLike | None = None,
    sam: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | str | None = None,
    trust_remote_code: bool = False,
) -> LoadedParts:
    """Load LMM, SAM and head. ``head=None`` means the shipped shapes-world model (then ``lmm``/``sam``
    default to the shipped folders too). Otherwise ``lmm`` and ``sam`` default to the names the head's
    config records. The head stays float32; the LMM is loaded in ``dtype`` (default float32).

    Raises:
        ConfigError: a part is missing or unreadable, or the head does not fit the LMM.
    """
    local_only: bool | None = None
    if head is None:
        shipped = _shipped_paths()
        head, lmm, sam = shipped["head"], lmm or shipped["lmm"], sam or shipped["sam"]
        local_only = True
    sam_model = _load_sam(str(sam), device, local_only) if sam is not None else None
    kw = {"local_files_only": local_only} if local_only else {}
    flmm_head = FLMMHead.from_pretrained(str(head), sam_model=sam_model, map_location="cpu", **kw)
    lmm_name = str(lmm) if lmm is not None else flmm_head.config.lmm.name
    if not lmm_name:
        raise ConfigError(f"the head at {str(head)!r} does not name its LMM: pass lmm=HUB_ID_OR_FOLDER")
    frozen = FrozenLMM.from_pretrained(
        lmm_name,
        dtype=_dtype(dtype),
        device=device,
        trust_remote_code=trust_remote_code,
        local_files_only=local_only,
    )
    flmm_head.check_compatible(frozen.identity)
    return LoadedParts(frozen, flmm_head.to(device).eval())
