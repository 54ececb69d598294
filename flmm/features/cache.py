"""The frozen-LMM feature cache: what the head reads, computed once and reused every epoch.

The LMM never changes, so its per-object attention maps and text states are the same at every epoch;
the reference code recomputes them at every step. The cache stores per sample:

- per object, the maps of its tokens merged over the phrase (mean or max, as the head merges them),
  *before* upsampling: ``(M, N, h, w)`` per grid, fp16;
- per object, the per-layer hidden states of its word-pieces ``(T_obj, M, d)``, fp16 (text prompt);
- the last hidden states of all answer tokens ``(T, d)`` fp16 and their 0/1 keyword labels;
- the ground-truth masks (bit-packed) and the grids' geometry, so training needs no image at all;
- optionally the frozen SAM image embedding ``(P, e, e)`` fp16.

Layout: a folder of shards ``shard-r{rank}-{n:05d}.safetensors`` + ``.json`` (metadata), each written
to a temporary name and renamed, the JSON last: a shard counts only once its JSON exists, so an
interrupted build resumes by skipping the samples of complete shards. Each process of a distributed
build writes its own shards.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch.utils.data import Dataset

from flmm.errors import DataError
from flmm.geometry import GridGeometry
from flmm.head.types import GroundingQuery, ObjectFeatures

FORMAT_VERSION = 1


@dataclass
class CachedSample:
    """One cached training sample (see the module docstring for shapes; maps fp16 as stored).

    Attributes:
        sample_id: the dataset's id.
        geometries: the visual grids' geometry.
        objects: per object merged maps ``[(1, M, N, h, w)]`` per grid and hidden ``(T_obj, M, d)``.
        masks: ``(K, H, W)`` bool ground truth, one per object.
        keyword_hidden: ``(T, d)`` last hidden states of the answer tokens.
        keyword_labels: ``(T,)`` float 0/1, 1 where a token lies in an object's span.
        image_embedding: ``(1, P, e, e)`` SAM embedding, or None.
        meta: small JSON-able extras (category/plural of each object, dataset name).
    """

    sample_id: str
    geometries: list[GridGeometry]
    objects: list[ObjectFeatures]
    masks: torch.Tensor
    keyword_hidden: torch.Tensor
    keyword_labels: torch.Tensor
    image_embedding: torch.Tensor | None = None
    meta: dict | None = None

    def to_query(self, dtype: torch.dtype = torch.float32) -> GroundingQuery:
        """The head's input in cache form (tensors cast to ``dtype``)."""
        objs = [
            ObjectFeatures([a.to(dtype) for a in o.attentions], o.hidden_states.to(dtype))
            for o in self.objects
        ]
        emb = self.image_embedding.to(dtype) if self.image_embedding is not None else None
        return GroundingQuery(None, objs, emb, self.geometries, self.keyword_hidden.to(dtype))


def _pack(mask: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
    m = mask.bool().cpu().numpy()
    return torch.from_numpy(np.packbits(m.reshape(-1))), list(m.shape)


def _unpack(packed: torch.Tensor, shape: list[int]) -> torch.Tensor:
    n = int(np.prod(shape))
    return torch.from_numpy(np.unpackbits(packed.numpy())[:n].reshape(shape).astype(bool))


class CacheWriter:
    """Appends samples to a cache folder in shards of ``shard_size`` samples (one writer per process).

    Args:
        root: the cache folder (created).
        rank: this process's index (shard names carry it, so processes never collide).
        shard_size: samples per shard; smaller shards lose less work on interruption.
        info: JSON-able description of what was cached (LMM identity, merge mode, dataset), written to
            ``cache.json`` by rank 0 and checked by :class:`FeatureCache` users.
    """

    def __init__(
        self, root: str | os.PathLike, rank: int = 0, shard_size: int = 256, info: dict | None = None
    ):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.rank = rank
        self.shard_size = shard_size
        self._tensors: dict[str, torch.Tensor] = {}
        self._meta: list[dict] = []
        existing = sorted(self.root.glob(f"shard-r{rank}-*.json"))
        self._next = 1 + max((int(p.stem.split("-")[-1]) for p in existing), default=-1)
        if info is not None and rank == 0:
            _atomic_write_text(
                self.root / "cache.json", json.dumps({"format": FORMAT_VERSION, **info}, indent=2)
            )

    def add(self, s: CachedSample) -> None:
        """Queue one sample; a full shard is flushed to disk."""
        k = len(self._meta)
        t = self._tensors
        for o, obj in enumerate(s.objects):
            for g, a in enumerate(obj.attentions):
                t[f"{k}.o{o}.maps{g}"] = a.detach().to(torch.float16).cpu().contiguous()
            t[f"{k}.o{o}.hidden"] = obj.hidden_states.detach().to(torch.float16).cpu().contiguous()
        t[f"{k}.kw_hidden"] = s.keyword_hidden.detach().to(torch.float16).cpu().contiguous()
        t[f"{k}.kw_labels"] = s.keyword_labels.detach().to(torch.uint8).cpu().contiguous()
        packed, shape = _pack(s.masks)
        t[f"{k}.masks"] = packed
        if s.image_embedding is not None:
            t[f"{k}.embedding"] = s.image_embedding.detach().to(torch.float16).cpu().contiguous()
        self._meta.append(
            {
                "id": s.sample_id,
                "objects": len(s.objects),
                "grids": [g.to_dict() for g in s.geometries],
                "mask_shape": shape,
                "embedding": s.image_embedding is not None,
                "meta": s.meta or {},
            }
        )
        if len(self._meta) >= self.shard_size:
            self.flush()

    def flush(self) -> None:
        """Write the queued samples as one complete shard (tensors first, then its JSON)."""
        if not self._meta:
            return
        stem = self.root / f"shard-r{self.rank}-{self._next:05d}"
        tmp = stem.with_suffix(".safetensors.tmp")
        save_file(self._tensors, str(tmp))
        os.replace(tmp, stem.with_suffix(".safetensors"))
        _atomic_write_text(
            stem.with_suffix(".json"), json.dumps({"format": FORMAT_VERSION, "samples": self._meta})
        )
        self._next += 1
        self._tensors, self._meta = {}, []

    def close(self) -> None:
        self.flush()


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class FeatureCache(Dataset):
    """Read side of a cache folder: ``len``, ``cache[i]`` / ``cache.get(sample_id)`` -> :class:`CachedSample`.

    Shards are memory-mapped on first use. Only complete shards (with their JSON) are visible.
    """

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(f"feature cache {self.root} does not exist; build it first (flmm cache build)")
        self._entries: list[tuple[Path, int, dict]] = []
        for meta_path in sorted(self.root.glob("shard-r*-*.json")):
            data = json.loads(meta_path.read_text())
            if data.get("format") != FORMAT_VERSION:
                raise DataError(
                    f"{meta_path}: cache format {data.get('format')} != {FORMAT_VERSION}; rebuild it"
                )
            st = meta_path.with_suffix(".safetensors")
            if not st.exists():
                raise DataError(f"{meta_path} has no tensor file {st.name}; the cache is damaged, rebuild it")
            for k, m in enumerate(data["samples"]):
                self._entries.append((st, k, m))
        self._index = {m["id"]: i for i, (_, _, m) in enumerate(self._entries)}
        self._handles: dict[Path, object] = {}
        info = self.root / "cache.json"
        self.info: dict = json.loads(info.read_text()) if info.exists() else {}

    def __len__(self) -> int:
        return len(self._entries)

    def ids(self) -> set[str]:
        return set(self._index)

    def __contains__(self, sample_id: str) -> bool:
        return sample_id in self._index

    def get(self, sample_id: str) -> CachedSample:
        if sample_id not in self._index:
            raise DataError(f"sample {sample_id!r} is not in the cache {self.root}")
        return self[self._index[sample_id]]

    def __iter__(self) -> Iterator[CachedSample]:
        for i in range(len(self)):
            yield self[i]

    def _open(self, path: Path):
        h = self._handles.get(path)
        if h is None:
            h = safe_open(str(path), framework="pt")
            self._handles[path] = h
        return h

    def __getitem__(self, i: int) -> CachedSample:
        path, k, m = self._entries[i]
        f = self._open(path)
        geoms = [GridGeometry.from_dict(g) for g in m["grids"]]
        objects = [
            ObjectFeatures(
                [f.get_tensor(f"{k}.o{o}.maps{g}") for g in range(len(geoms))],
                f.get_tensor(f"{k}.o{o}.hidden"),
            )
            for o in range(m["objects"])
        ]
        emb = f.get_tensor(f"{k}.embedding") if m.get("embedding") else None
        return CachedSample(
            sample_id=m["id"],
            geometries=geoms,
            objects=objects,
            masks=_unpack(f.get_tensor(f"{k}.masks"), m["mask_shape"]),
            keyword_hidden=f.get_tensor(f"{k}.kw_hidden"),
            keyword_labels=f.get_tensor(f"{k}.kw_labels").float(),
            image_embedding=emb,
            meta=m.get("meta"),
        )

    def object_hidden(self, i: int, o: int) -> torch.Tensor:
        """Hidden states ``(T_obj, M, d)`` of object ``o`` of sample ``i``, read alone (not the whole sample)."""
        path, k, m = self._entries[i]
        if not 0 <= o < m["objects"]:
            raise DataError(f"sample {m['id']!r} has {m['objects']} objects, not an object {o}")
        return self._open(path).get_tensor(f"{k}.o{o}.hidden")

    def __getstate__(self) -> dict:  # safetensors handles do not pickle (DataLoader workers reopen them)
        d = dict(self.__dict__)
        d["_handles"] = {}
        return d
