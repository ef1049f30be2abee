"""SIGTERM handling: finish the current iteration, save, exit 0 — within a time bound.

Cloud TPU / GPU schedulers send SIGTERM some time before killing a preempted VM. The handler
only sets a flag (a compiled step cannot be interrupted safely); the runner checks it between
iterations, saves and returns. A watchdog thread started by the signal bounds the whole exit:
if the process is still alive ``grace_seconds`` later (a slow iteration or save), it leaves at
once with status 143 (128 + SIGTERM) and the last committed checkpoint is used on restart —
Orbax never leaves a half-written checkpoint where a complete one is expected.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Callable

import jax
import numpy as np

EXIT_ABANDONED = 128 + signal.SIGTERM


def _exit_now(status: int) -> None:
    sys.stderr.write(
        f"preemption: grace period over before a clean exit; leaving with status {status}; "
        "the next start resumes from the last committed checkpoint\n"
    )
    sys.stderr.flush()
    os._exit(status)  # threads (async checkpoint writers) may still run; do not wait for them


class PreemptionWatcher:
    """Context manager installing the SIGTERM handler (main thread only) and restoring the old
    one on exit. ``requested()`` is True on every process once any process got SIGTERM."""

    def __init__(
        self,
        grace_seconds: float,
        on_grace_expired: Callable[[int], None] = _exit_now,
        signum: int = signal.SIGTERM,
    ):
        self.grace_seconds = grace_seconds
        self._on_grace_expired = on_grace_expired
        self._signum = signum
        self._event = threading.Event()
        self._previous = None
        self._watchdog: threading.Timer | None = None

    def __enter__(self) -> PreemptionWatcher:
        self._previous = signal.signal(self._signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        signal.signal(self._signum, self._previous)
        if self._watchdog is not None:
            self._watchdog.cancel()

    def _handle(self, signum, frame) -> None:
        if self._event.is_set():
            return
        logging.warning("got signal %d: saving after the current iteration", signum)
        self._event.set()
        self._watchdog = threading.Timer(
            self.grace_seconds, self._on_grace_expired, args=(EXIT_ABANDONED,)
        )
        self._watchdog.daemon = True
        self._watchdog.start()

    def requested(self) -> bool:
        """Whether to stop now. With several processes all must agree on the same iteration,
        so the local flags are combined with an all-gather (every process calls this once per
        iteration)."""
        local = self._event.is_set()
        if jax.process_count() == 1:
            return local
        from jax.experimental import multihost_utils

        flags = multihost_utils.process_allgather(np.asarray(local, np.int32))
        return bool(np.any(flags))
