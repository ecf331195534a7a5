"""Metric writers: JSON lines and TensorBoard (via tensorboardX, no TensorFlow), on process 0 only."""

from __future__ import annotations

import json
import pathlib
import time


class MetricWriter:
    """Appends `{"step": s, ...metrics}` to `W/metrics.jsonl` and scalars to `W/tensorboard/`."""

    def __init__(self, workdir: str | pathlib.Path, enabled: bool = True):
        self.enabled = enabled
        self._tb = None
        if not enabled:
            return
        workdir = pathlib.Path(workdir)
        self._jsonl = open(workdir / "metrics.jsonl", "a")  # noqa: SIM115 - closed in close()
        try:
            from tensorboardX import SummaryWriter
        except ImportError:  # TensorBoard logs are optional
            return
        self._tb = SummaryWriter(str(workdir / "tensorboard"))

    def write(self, step: int, metrics: dict) -> None:
        if not self.enabled:
            return
        record = {"step": int(step), "time": time.time(), **{k: float(v) for k, v in metrics.items()}}
        self._jsonl.write(json.dumps(record) + "\n")
        self._jsonl.flush()
        if self._tb is not None:
            for name, value in metrics.items():
                self._tb.add_scalar(name, float(value), int(step))

    def close(self) -> None:
        if not self.enabled:
            return
        self._jsonl.close()
        if self._tb is not None:
            self._tb.close()
