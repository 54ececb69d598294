"""Hugging Face hub glue of the head: its model card and loading the SAM a checkpoint names."""

from __future__ import annotations

import torch.nn as nn

from flmm.errors import ConfigError

MODEL_CARD = """
---
{{ card_data }}
---

A mask head of the `flmm` library (F-LMM: grounding frozen large multimodal models). It
holds only the trainable weights (U-Net mask decoder, language cues, keyword selector, SAM prompt encoder and
mask decoder); `config.json` names the frozen LMM and SAM it was trained with. Load it with
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
