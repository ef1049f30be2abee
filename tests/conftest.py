"""Test set-up: 8 simulated CPU devices (must happen before JAX is imported anywhere)."""

import atexit
import os
import shutil
import tempfile

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Test models are tiny, so XLA's LLVM optimisation passes cost more than they save (Flax skips
# them in its slow-compiling tests too): 555 s instead of 664 s for the suite on 2 cores.
# Benchmarks and real runs keep them; JAX_DISABLE_MOST_OPTIMIZATIONS=0 tests optimised programs.
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")
# One persistent compilation cache per test session: tests and pipeline stages compile the same
# tiny programs through fresh jit objects, and a repeat compile becomes a disk read (the
# miniature pipeline test: 149 s instead of 190 s, measured side by side on a loaded machine).
# A fresh directory each session, so no run ever reads a stale cache. Compile counts are
# unaffected: jax.monitoring's backend-compile event also covers cache hits.
_XLA_CACHE = tempfile.mkdtemp(prefix="fgjax-tests-xla-cache-")
atexit.register(shutil.rmtree, _XLA_CACHE, ignore_errors=True)
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", _XLA_CACHE)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
# Tests never touch the network: the hub is switched off for transformers / huggingface_hub.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pathlib  # noqa: E402

import pytest  # noqa: E402

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
QA_FEEDBACK_DIR = REPO_ROOT.parent / "shared" / "data" / "qa_feedback"


@pytest.fixture(scope="session")
def qa_feedback_dir() -> pathlib.Path:
    if not (QA_FEEDBACK_DIR / "dev_feedback.json").is_file():
        pytest.fail(f"QA-Feedback dev split not found at {QA_FEEDBACK_DIR}")
    return QA_FEEDBACK_DIR
