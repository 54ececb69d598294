"""Filling the feature cache from a frozen LMM and a grounding dataset (sharded, resumable, distributed).

    build_cache(lmm, dataset, "cache/refcoco-train", merge="mean", embed_image=head.embed_image)

Each process handles the samples ``i`` with ``i % world_size == rank`` (``accelerate launch`` sets
them) and writes its own shards; samples already in complete shards are skipped, so an interrupted
build continues where it stopped.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Callable
from typing import Protocol

import torch
from tqdm.auto import tqdm

from flmm.data.types import GroundingSample
from flmm.errors import FlmmError
from flmm.features.cache import CachedSample, CacheWriter, FeatureCache
from flmm.head.keyword import keyword_labels
from flmm.head.prep import MERGE_MODES
from flmm.head.types import ObjectFeatures
from flmm.lmm.frozen import FrozenLMM
from flmm.lmm.messages import conversation
from flmm.lmm.types import CaptureResult

log = logging.getLogger("flmm.features")


class SampleSource(Protocol):
    """Any sized, indexable collection of grounding samples (the flmm.data readers, a list)."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> GroundingSample: ...


def cached_sample(
    sample: GroundingSample,
    capture: CaptureResult,
    merge: str = "mean",
    image_embedding: torch.Tensor | None = None,
) -> CachedSample:
    """Turn one sample and the capture of *all* its answer tokens into a cache record.

    Objects' tokens are those whose character span overlaps any of the object's spans; their maps
    ``(T_obj, M, N, h, w)`` are merged over the phrase (``mean`` | ``max``) to ``(1, M, N, h, w)``.
    Raises :class:`FlmmError` when an object covers no token.
    """
    if merge not in MERGE_MODES:
        raise FlmmError(f"merge must be one of {MERGE_MODES}, got {merge!r}")
    objects, all_spans = [], []
    for obj in sample.objects:
        idx = torch.nonzero(keyword_labels(capture.offsets, obj.spans)).flatten()
        if len(idx) == 0:
            raise FlmmError(f"{sample.sample_id}: object spans {obj.spans} cover no token of the answer")
        maps = []
        for a in capture.attentions:
            sel = a[idx].float()
            maps.append((sel.mean(0) if merge == "mean" else sel.amax(0))[None])
        objects.append(ObjectFeatures(maps, capture.hidden_states[idx]))
        all_spans.extend(obj.spans)
    labels = keyword_labels(capture.offsets, all_spans) if all_spans else torch.zeros(len(capture.offsets))
    masks = (
        torch.from_numpy(sample.masks())
        if sample.objects
        else torch.zeros(0, *sample.image_hw, dtype=torch.bool)
    )
    meta = {
        "category": [o.category for o in sample.objects],
        "plural": [bool(o.plural) for o in sample.objects],
        "dataset": sample.meta.get("dataset", ""),
    }
    return CachedSample(
        sample.sample_id,
        capture.geometries,
        objects,
        masks,
        capture.last_hidden,
        labels,
        image_embedding,
        meta,
    )


def build_cache(
    lmm: FrozenLMM,
    dataset: SampleSource,
    root: str | os.PathLike,
    merge: str = "mean",
    embed_image: Callable | None = None,
    batch_size: int = 8,
    shard_size: int = 256,
    rank: int | None = None,
    world_size: int | None = None,
    progress: bool = True,
    info: dict | None = None,
) -> Counter:
    """Compute and store the features of every sample of ``dataset`` not yet in the cache at ``root``.

    Args:
        lmm: the frozen LMM (its identity is recorded in ``cache.json``).
        dataset: grounding samples (e.g. :mod:`flmm.data` readers); bad samples they skip stay skipped.
        merge: how phrase tokens are merged (must match the head's ``config.merge``).
        embed_image: image -> ``(1, P, e, e)`` frozen SAM embedding to cache too (e.g. ``head.embed_image``).
        batch_size: samples per LMM forward.
        rank, world_size: this process's share; default from ``accelerate.PartialState``.

    Returns:
        counts: ``written``, ``present`` (already cached), ``skipped`` (failed, with a logged reason).
    """
    if rank is None or world_size is None:
        from accelerate import PartialState

        state = PartialState(cpu=not torch.cuda.is_available())
        rank, world_size = state.process_index, state.num_processes
    done = FeatureCache(root).ids() if os.path.isdir(root) else set()
    ident = lmm.identity
    meta = {"lmm": ident.__dict__, "merge": merge, "with_embedding": embed_image is not None, **(info or {})}
    writer = CacheWriter(root, rank=rank, shard_size=shard_size, info=meta)
    counts: Counter = Counter()
    mine = range(rank, len(dataset), world_size)
    batch: list[GroundingSample] = []
    bar = tqdm(total=len(mine), desc=f"cache r{rank}", disable=not progress, position=rank)

    def run(samples: list[GroundingSample]) -> None:
        try:
            images = [s.load_image() for s in samples]
            caps = lmm.capture_batch(images, [conversation(s.question, s.answer) for s in samples])
        except FlmmError as e:
            if len(samples) > 1:  # find the culprit, keep the rest
                for s in samples:
                    run([s])
                return
            counts["skipped"] += 1
            log.warning("feature cache: skipping %s: %s", samples[0].sample_id, e)
            return
        for s, img, cap in zip(samples, images, caps):
            try:
                emb = embed_image(img) if embed_image is not None else None
                writer.add(cached_sample(s, cap, merge, emb))
                counts["written"] += 1
            except FlmmError as e:
                counts["skipped"] += 1
                log.warning("feature cache: skipping %s: %s", s.sample_id, e)

    for i in mine:
        sample = dataset[i]
        if sample.sample_id in done:
            counts["present"] += 1
            bar.update(1)
            continue
        batch.append(sample)
        if len(batch) == batch_size:
            run(batch)
            bar.update(len(batch))
            batch = []
    if batch:
        run(batch)
        bar.update(len(batch))
    writer.close()
    bar.close()
    if counts["skipped"]:
        log.warning("feature cache: %d samples skipped (see warnings above)", counts["skipped"])
    return counts
