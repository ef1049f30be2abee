"""Run outputs: metrics (JSONL + TensorBoard), the progress bar, run info and the curves PNG.

Metric names are namespaced (``reward/r1``, ``kl/mean``, ``policy/clipfrac``). Every logged step
becomes one JSON line ``{"step": N, "name": value, ...}`` in ``workdir/metrics.jsonl`` and one
scalar per name in ``workdir/tensorboard``. Only process 0 writes (``jax.process_index() == 0``).
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np

METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"
RUN_INFO_FILE = "run_info.json"
CONFIG_FILE = "config.json"
CURVES_FILE = "curves.png"


def is_writer() -> bool:
    return jax.process_index() == 0


def _atomic_write_text(path: str, text: str) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def to_python(metrics: Mapping[str, Any]) -> dict[str, float | int]:
    """Host scalars (``jax.device_get`` first) as Python numbers, keys sorted."""
    out = {}
    for name in sorted(metrics):
        value = np.asarray(metrics[name])
        if value.size != 1:
            raise ValueError(f"metric {name!r} has shape {value.shape}; metrics are scalars")
        out[name] = value.item()
    return out


def read_jsonl(path: str) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


class MetricsWriter:
    """JSONL (+ TensorBoard) writer. ``resume_step``: drop what was logged after that step by an
    earlier, interrupted run (its checkpoint is older than its last log line), so the files read
    as one uninterrupted run."""

    def __init__(self, workdir: str, tensorboard: bool = True, resume_step: int | None = None):
        self.enabled = is_writer()
        self.path = os.path.join(workdir, METRICS_FILE)
        self._tb = None
        if not self.enabled:
            return
        os.makedirs(workdir, exist_ok=True)
        if resume_step is not None and os.path.exists(self.path):
            kept = [r for r in read_jsonl(self.path) if r["step"] <= resume_step]
            _atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))
        elif resume_step is None and os.path.exists(self.path):
            os.remove(self.path)  # a fresh run in a used workdir starts a fresh log
        self._file = open(self.path, "a")
        if tensorboard:
            from tensorboardX import SummaryWriter

            purge = None if resume_step is None else resume_step + 1
            self._tb = SummaryWriter(os.path.join(workdir, TENSORBOARD_DIR), purge_step=purge)

    def write(self, step: int, metrics: Mapping[str, float]) -> None:
        if not self.enabled:
            return
        record = {"step": int(step), **to_python(metrics)}
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        if self._tb is not None:
            for name, value in record.items():
                if name != "step":
                    self._tb.add_scalar(name, value, global_step=step)
            self._tb.flush()

    def close(self) -> None:
        if not self.enabled:
            return
        self._file.close()
        if self._tb is not None:
            self._tb.close()


class ProgressBar:
    """tqdm bar over iterations with ETA and the latest values of ``keys``."""

    def __init__(self, total: int, initial: int, keys: Sequence[str], enabled: bool = True):
        from tqdm import tqdm

        self.keys = tuple(keys)
        self._bar = tqdm(
            total=total,
            initial=initial,
            disable=not (enabled and is_writer()),
            dynamic_ncols=True,
            unit="it",
            file=sys.stderr,
        )

    def update(self, iteration: int, metrics: Mapping[str, Any]) -> None:
        shown = {k: f"{float(metrics[k]):.4g}" for k in self.keys if k in metrics}
        if shown:
            self._bar.set_postfix(shown, refresh=False)
        self._bar.update(iteration - self._bar.n)

    def close(self) -> None:
        self._bar.close()


def git_revision(source_dir: str | None = None) -> str:
    """``<sha>`` (``+dirty`` with uncommitted changes) of the checkout holding the package, or
    ``"unknown (<why>)"`` for an installed wheel or a machine without git."""
    source_dir = source_dir or os.path.dirname(os.path.abspath(__file__))
    try:
        sha = subprocess.run(
            ["git", "-C", source_dir, "rev-parse", "HEAD"],
            capture_output=True, text=True, check=True, timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", source_dir, "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, check=True, timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError) as err:
        return f"unknown ({type(err).__name__})"
    return sha + ("+dirty" if dirty else "")


def write_run_info(workdir: str, config: Mapping[str, Any], extra: Mapping | None = None) -> None:
    """``config.json`` (the resolved config) and ``run_info.json`` (versions, git revision,
    devices, command line) in the workdir, written by process 0 at start-up."""
    if not is_writer():
        return
    os.makedirs(workdir, exist_ok=True)
    _atomic_write_text(
        os.path.join(workdir, CONFIG_FILE), json.dumps(config, indent=2, default=str) + "\n"
    )
    info = {
        "fgjax_version": importlib.metadata.version("fgjax"),
        "git_revision": git_revision(),
        "jax_version": jax.__version__,
        "backend": jax.default_backend(),
        "device_count": jax.device_count(),
        "process_count": jax.process_count(),
        "command": sys.argv,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **(extra or {}),
    }
    _atomic_write_text(os.path.join(workdir, RUN_INFO_FILE), json.dumps(info, indent=2) + "\n")


# Panels of the curves figure: (title, metric-name prefixes or names).
CURVE_PANELS = (
    ("reward", ("reward/", "eval/reward")),
    ("KL", ("kl/mean",)),
    ("response length", ("response/length",)),
    ("training loss", ("loss/total",)),  # also SFT / reward-model runs
    ("oracle, greedy held-out answers", ("eval/oracle/error_rate/any", "eval/oracle/fact_recall")),
)


def plot_curves(jsonl_path: str, png_path: str) -> list[str]:
    """Write the reward (one line per RM), KL and length curves; returns the plotted names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_jsonl(jsonl_path)
    panels = []
    for title, patterns in CURVE_PANELS:
        names = sorted({k for r in records for k in r if k != "step" and any(
            k == p or (p.endswith("/") and k.startswith(p)) for p in patterns)})
        if names:
            panels.append((title, names))
    if not panels:
        raise ValueError(f"{jsonl_path} has none of the curve metrics {CURVE_PANELS}")
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6), squeeze=False)
    for ax, (title, names) in zip(axes[0], panels):
        for name in names:
            points = [(r["step"], r[name]) for r in records
                      if name in r and math.isfinite(r[name])]
            ax.plot([p[0] for p in points], [p[1] for p in points], label=name)
        ax.set_title(title)
        ax.set_xlabel("iteration")
        ax.legend(fontsize="small")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png_path + ".tmp.png", dpi=100)
    plt.close(fig)
    os.replace(png_path + ".tmp.png", png_path)
    return [name for _, names in panels for name in names]
