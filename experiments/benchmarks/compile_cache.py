"""What the persistent XLA compilation cache (``compilation_cache.dir``) saves: one job run three
times, each in a fresh process and a fresh workdir, with the cache off, cold (an empty folder)
and warm (the folder the cold run filled).

    python experiments/benchmarks/compile_cache.py [--job miniature|default|toy]

``miniature`` is the test suite's miniature of ``python -m fgjax.train``
(``fgjax.pipelines.synthetic_config.MINIATURE``, 8 simulated CPU devices, XLA optimisations off,
as ``tests/conftest.py`` runs it); ``default`` is ``python -m fgjax.train`` itself (~8 min per
run on 2 cores); ``toy`` is the runner's toy job (seconds; the test suite's smoke run).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO_ROOT)

from fgjax.pipelines.synthetic_config import MINIATURE  # noqa: E402

TEST_ENV = {"XLA_FLAGS": "--xla_force_host_platform_device_count=8", "JAX_PLATFORMS": "cpu",
            "JAX_DISABLE_MOST_OPTIMIZATIONS": "1"}
JOBS = {  # name: (command, extra environment)
    "miniature": ([sys.executable, "-m", "fgjax.train", *MINIATURE], TEST_ENV),
    "default": ([sys.executable, "-m", "fgjax.train"], {}),
    "toy": ([sys.executable, os.path.join(REPO_ROOT, "tests", "runner_toy.py"),
             f"--config={os.path.join(REPO_ROOT, 'configs', 'toy.py')}"], TEST_ENV),
}
MODES = ("off", "cold", "warm")
# A caller's cache settings (the test suite's) must not leak into the runs.
CLEARED_ENV = ("FGJAX_CACHE_DIR", "JAX_COMPILATION_CACHE_DIR",
               "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "JAX_ENABLE_COMPILATION_CACHE")


def run_job(job: str, mode: str, root: str) -> tuple[float, dict[str, float]]:
    """Wall seconds of one run and the seconds of each pipeline stage it printed."""
    command, extra_env = JOBS[job]
    cache = "" if mode == "off" else os.path.join(root, "xla")
    env = {k: v for k, v in os.environ.items() if k not in CLEARED_ENV} | extra_env
    argv = [*command, f"--workdir={os.path.join(root, mode)}",
            f"--config.compilation_cache.dir={cache}"]
    print(f"[{job}, cache {mode}] running ...", file=sys.stderr, flush=True)
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=REPO_ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode:
        sys.exit(f"{job} with the cache {mode} failed (exit {done.returncode}):\n"
                 f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    print(f"[{job}, cache {mode}] {seconds:.1f} s", file=sys.stderr, flush=True)
    stages = {m[1]: float(m[2]) for m in re.finditer(r"^\[(\w+)\] done in ([\d.]+) s$",
                                                      done.stdout, re.M)}
    return seconds, stages


def folder_summary(path: str) -> str:
    files = [os.path.join(path, f) for f in os.listdir(path)] if os.path.isdir(path) else []
    return f"{len(files)} entries, {sum(os.path.getsize(f) for f in files) / 1e6:.1f} MB"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--job", choices=sorted(JOBS), default="miniature")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="fgjax_compile_cache_") as root:
        results = {mode: run_job(args.job, mode, root) for mode in MODES}
        entries = folder_summary(os.path.join(root, "xla"))
    off = results["off"][0]
    print(f"compilation cache benchmark, job {args.job} ({os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f})")
    print(f"{'cache':<6}  {'wall s':>7}  {'vs off':>6}")
    print(f"{'-' * 6}  {'-' * 7}  {'-' * 6}")
    for mode, (seconds, _) in results.items():
        print(f"{mode:<6}  {seconds:7.1f}  {seconds / off:5.2f}x")
    stages = list(results["off"][1])
    if stages:
        print(f"\n{'stage':<18}" + "".join(f"  {m + ' s':>7}" for m in MODES))
        for stage in stages:
            print(f"{stage:<18}" + "".join(f"  {results[m][1].get(stage, 0.0):7.1f}"
                                           for m in MODES))
    print(f"\ncache after the cold run: {entries}")


if __name__ == "__main__":
    main()
