"""The embedded default models of the shapes world, and the stages that train them.

- :mod:`flmm.shapes.tokenizer`: word-level tokenizer + LLaVA-1.5 chat template.
- :mod:`flmm.shapes.lmm`: the tiny LMM, a stock ``LlavaForConditionalGeneration`` (CLIP ViT + Llama),
  with its ``LlavaProcessor``; build, save and load in Hugging Face format.
- :mod:`flmm.shapes.lmm_data`: caption / QA conversations of the shapes world (no grounding data).
- :mod:`flmm.shapes.lmm_eval`: QA exact match and the attention grounding probe.
- :mod:`flmm.shapes.vision_warmup` (data: :mod:`flmm.shapes.warmup_data`, probes:
  :mod:`flmm.shapes.concepts`, :mod:`flmm.shapes.relations`): the ViT's warm-up before stage 1.
- :mod:`flmm.shapes.text_pretrain`: the Llama's text-only phase on scenes told in words, before it
  sees images.
- :mod:`flmm.shapes.relation_readout`: can a tower's fixed tokens answer relation questions?
- :mod:`flmm.shapes.oracle`: ground-truth visual tokens in place of the tower (what the LM stage can
  learn when vision is perfect; ``examples/oracle_lmm.py``).
- :mod:`flmm.shapes.train_lmm`: stage 1, ``python -m flmm.shapes.train_lmm --out DIR``.
- :mod:`flmm.shapes.train_sam` (stage 2), :mod:`flmm.shapes.train_head` (stage 3) and
  :mod:`flmm.shapes.train_all` (all three; ``--processes 2`` runs each as two data-parallel processes,
  the fastest way on a 2-core CPU); :mod:`flmm.shapes.stage` holds what the stages share.

The shipped weights live in ``flmm/assets/shapes/lmm`` (see :data:`LMM_ASSET_DIR`). Submodules are
imported on use, so ``import flmm.shapes`` stays light.
"""

import os

LMM_ASSET_DIR = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "assets", "shapes", "lmm"
)
