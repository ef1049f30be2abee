"""Test set-up: 8 simulated CPU devices (must happen before JAX is imported anywhere)."""

import os
import pathlib

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Test models are tiny, so XLA's LLVM optimisation passes cost more than they save (Flax skips
# them in its slow-compiling tests too): 555 s instead of 664 s for the suite on 2 cores.
# Benchmarks and real runs keep them; JAX_DISABLE_MOST_OPTIMIZATIONS=0 tests optimised programs.
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")
# The persistent XLA compilation cache lives in the repository's (ignored) .pytest_cache, not in
# ~/.cache, and is on for the whole session, not only after the first entry point enables it:
# fgjax's default (compilation_cache.dir) and JAX's own setting name the same folder.
os.environ.setdefault("FGJAX_CACHE_DIR", str(REPO_ROOT / ".pytest_cache" / "fgjax"))
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(os.environ["FGJAX_CACHE_DIR"],
                                                                "xla"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
# Tests never touch the network: the hub is switched off for transformers / huggingface_hub.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

QA_FEEDBACK_DIR = REPO_ROOT.parent / "shared" / "data" / "qa_feedback"


@pytest.fixture(scope="session")
def qa_feedback_dir() -> pathlib.Path:
    if not (QA_FEEDBACK_DIR / "dev_feedback.json").is_file():
        pytest.fail(f"QA-Feedback dev split not found at {QA_FEEDBACK_DIR}")
    return QA_FEEDBACK_DIR
