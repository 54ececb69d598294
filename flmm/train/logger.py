"""Scalar logging of a run: one JSON object per line in ``log.jsonl``, plus TensorBoard if installed."""

from __future__ import annotations

import json
import os
import time
from typing import Any


class RunLogger:
    """Appends records to ``<run>/log.jsonl`` (main process only; other processes pass ``enabled=False``).

    Each record is ``{"step": int, "kind": "train" | "eval" | "event", "time": unix seconds, ...scalars}``.
    """

    def __init__(self, run_dir: str, enabled: bool = True, tensorboard: bool = True) -> None:
        self.enabled = enabled
        self.path = os.path.join(run_dir, "log.jsonl")
        self._tb = None
        if enabled:
            os.makedirs(run_dir, exist_ok=True)
            if tensorboard:
                try:  # optional dependency: the loop never requires tensorboard
                    from torch.utils.tensorboard import SummaryWriter

                    self._tb = SummaryWriter(os.path.join(run_dir, "tensorboard"))
                except ImportError:
                    self._tb = None

    def log(self, step: int, kind: str = "train", **values: Any) -> None:
        if not self.enabled:
            return
        record = {"step": int(step), "kind": kind, "time": round(time.time(), 3), **values}
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self._tb is not None:
            for key, value in values.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    self._tb.add_scalar(f"{kind}/{key}", value, step)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None


def read_log(run_dir: str, kind: str | None = None) -> list[dict[str, Any]]:
    """All records of ``<run>/log.jsonl`` (of one ``kind`` if given), in order."""
    path = os.path.join(run_dir, "log.jsonl")
    if not os.path.isfile(path):
        return []
    with open(path) as f:
        records = [json.loads(line) for line in f if line.strip()]
    return [r for r in records if kind is None or r.get("kind") == kind]
