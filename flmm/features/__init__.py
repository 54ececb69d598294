"""The frozen-LMM feature cache (compute once, train many epochs without the LMM)."""

from flmm.features.build import build_cache, cached_sample
from flmm.features.cache import CachedSample, CacheWriter, FeatureCache

__all__ = ["CacheWriter", "CachedSample", "FeatureCache", "build_cache", "cached_sample"]
