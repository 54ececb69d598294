"""Dataset readers: every reader yields :class:`GroundingSample` objects (see :mod:`flmm.data.types`).

Real formats: :func:`load_refcoco` (RefCOCO/+/g), :func:`load_png` (Panoptic Narrative Grounding),
:func:`load_reasonseg` (LISA's ReasonSeg), :func:`load_gcg_train` / :func:`load_gcg_eval` (GLaMM's
GranD-f GCG). Synthetic: :mod:`flmm.data.shapes` (needs :mod:`flmm.world`; imported on use).
"""

from flmm.data.base import DEFAULT_QUESTION, GroundingDataset
from flmm.data.grandf import GCGDataset, load_gcg_eval, load_gcg_train
from flmm.data.png import PNGDataset, load_png
from flmm.data.reasonseg import ReasonSegDataset, load_reasonseg
from flmm.data.refcoco import REFER_DATASETS, RefCOCODataset, load_refcoco
from flmm.data.types import GroundedObject, GroundingSample

__all__ = [
    "DEFAULT_QUESTION",
    "GCGDataset",
    "GroundedObject",
    "GroundingDataset",
    "GroundingSample",
    "PNGDataset",
    "REFER_DATASETS",
    "ReasonSegDataset",
    "RefCOCODataset",
    "load_gcg_eval",
    "load_gcg_train",
    "load_png",
    "load_reasonseg",
    "load_refcoco",
]
