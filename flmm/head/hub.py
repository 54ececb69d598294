"""Hugging Face hub glue of the head: its model card and loading the SAM a checkpoint names."""

from __future__ import annotations

import os
from pathlib import Path

import torch.nn as nn
from huggingface_hub import hf_hub_download

from flmm.errors import ConfigError

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"

MODEL_CARD = """
---
{{ card_data }}
---

A mask head of the `flmm` library (F-LMM: grounding frozen large multimodal models). It
holds only the trainable weights (U-Net mask decoder, language cues, keyword selector, part selector if
configured, SAM prompt encoder and mask decoder); `config.json` names the frozen LMM and SAM it was trained with. Load it with
`flmm.head.FLMMHead.from_pretrained(repo_id, sam_model=SamModel.from_pretrained(<the SAM in config.json>))`.

- Paper: {{ paper_url | default("[More Information Needed]", true) }}
"""


def load_sam(name: str) -> nn.Module:
    """``SamModel.from_pretrained(name)``, with a :class:`ConfigError` that says what to do on failure."""
    if not name:
        raise ConfigError("this head uses a SAM refiner but its config names no SAM: pass sam_model=...")
    from transformers import SamModel

    from flmm.assets_path import resolve

    try:
        return SamModel.from_pretrained(resolve(name))
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot load SAM {name!r} for the head's refiner ({e}): pass sam_model=...") from e


def checkpoint_files(model_id: str, **hub_kwargs) -> tuple[Path, Path]:
    """``(config.json, model.safetensors)`` paths of a head checkpoint: in the folder ``model_id`` when it
    is one, else downloaded from the hub repo ``model_id`` (``hub_kwargs``: revision, cache_dir, token,
    force_download, local_files_only)."""
    if os.path.isdir(model_id):
        cfg_path, weights_path = Path(model_id) / CONFIG_NAME, Path(model_id) / WEIGHTS_NAME
    else:
        cfg_path = Path(hf_hub_download(repo_id=model_id, filename=CONFIG_NAME, **hub_kwargs))
        weights_path = Path(hf_hub_download(repo_id=model_id, filename=WEIGHTS_NAME, **hub_kwargs))
    if not cfg_path.is_file() or not weights_path.is_file():
        raise ConfigError(f"{model_id!r} must hold {CONFIG_NAME} and {WEIGHTS_NAME}")
    return cfg_path, weights_path
