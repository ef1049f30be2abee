"""Speed of the compiled PPO step on this CPU; prints one table, no assertions.

    python experiments/benchmarks/ppo_step.py [--preset qa_release|qwen2|smoke] [--iterations N]
        [--repeats R] [--compare-torch]

Measured in one run: compile time of the full ``ppo_iteration``; steady-state time per
iteration and per phase (rollout / score + advantages / update, each jitted on its own with
the same setup; median of ``--repeats`` calls); the update phase's GFLOP/s (XLA cost analysis
over measured time) as a fraction of a 2048x2048 float32 matmul measured in the same run (MFU);
compilations after the first iteration (from ``jax.monitoring`` compile events). With
``--compare-torch`` the release's loop in PyTorch (``torch_reference.py``) runs on the same
sizes and the table gains the fgjax speed-up per phase.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from fgjax.models import init_model
from fgjax.rewards import RewardModelSpec, make_reward_fn
from fgjax.rollout import SamplingConfig
from fgjax.segments import segment_end_masks, tables_from_pieces
from fgjax.trainer.optim import OptimizerConfig
from fgjax.trainer.ppo import (
    PPOConfig,
    PPOSetup,
    compute_advantages,
    init_state,
    make_ppo_iteration,
    rollout,
    score_rollout,
    update,
)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import presets  # noqa: E402

COMPILE_EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
)
BACKEND_COMPILE = COMPILE_EVENTS[2]


class CompileLog:
    """Durations of tracing, lowering and XLA compilation reported by ``jax.monitoring``."""

    def __init__(self):
        self.events: list[tuple[str, float]] = []
        self._listener = self._record  # the same object must be unregistered
        jax.monitoring.register_event_duration_secs_listener(self._listener)

    def _record(self, event: str, duration: float, **_):
        if event in COMPILE_EVENTS:
            self.events.append((event, duration))

    def close(self):
        jax.monitoring.unregister_event_duration_listener(self._listener)

    def mark(self) -> int:
        return len(self.events)

    def seconds_since(self, mark: int) -> float:
        return sum(d for _, d in self.events[mark:])

    def compilations_since(self, mark: int) -> int:
        return sum(e == BACKEND_COMPILE for e, _ in self.events[mark:])


def count_params(tree) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def median_seconds(fn: Callable, repeats: int) -> float:
    """Median wall time of ``fn()`` (its outputs blocked on) over ``repeats`` calls."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def matmul_gflops(n: int, repeats: int) -> float:
    """float32 ``n x n`` matmul throughput, the machine's practical peak."""
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
    matmul = jax.jit(jnp.matmul)
    jax.block_until_ready(matmul(a, b))
    return 2 * n**3 / median_seconds(lambda: matmul(a, b), repeats) / 1e9


def flops(compiled) -> float:
    analysis = compiled.cost_analysis()
    if isinstance(analysis, list | tuple):
        analysis = analysis[0]
    return float(analysis["flops"])


def segment_fn_for_pieces(pieces: list[bytes]):
    tables = tables_from_pieces(pieces).as_jax()

    def segment_fn(response_ids, response_mask):
        masks = segment_end_masks(response_ids, response_mask, tables)
        return {"sentence": masks["sentence_end"], "subsentence": masks["subsentence_end"]}

    return segment_fn


def reward_spec(name: str) -> RewardModelSpec:
    kind, level, rm_input, magnitude = presets.REWARD_MODELS[name]
    if kind == "token_cls":
        return RewardModelSpec(
            name=name, kind=kind, level=level, input=rm_input, positive=magnitude,
            negative=-magnitude, error_label=1, ok_label=0,
        )
    return RewardModelSpec(name=name, kind=kind, level=level, input=rm_input,
                           scale=presets.R3_SCALE)


def build(p: presets.Preset, seed: int = 0):
    """``(setup, frozen, policy_params, value_params, batch, param_counts)`` on random weights."""
    keys = jax.random.split(jax.random.key(seed), 2 + len(p.reward_models))
    config = presets.policy_config(p)
    policy, policy_params = init_model(config, keys[0], "lm")
    value, value_params = init_model(config, keys[1], "value")
    rm_models, rm_params = {}, {}
    specs = [reward_spec(name) for name in p.reward_models]
    for spec, key in zip(specs, keys[2:], strict=True):
        rm_models[spec.name], rm_params[spec.name] = init_model(
            presets.reward_config(p, spec.name), key, spec.kind
        )
    reward_fn = make_reward_fn(
        rm_models, specs, segment_fn_for_pieces(presets.synthetic_pieces(p.vocab)), presets.PAD
    )
    setup = PPOSetup(
        policy=policy, ref=policy, value=value,
        sampling=SamplingConfig(
            max_new_tokens=p.new_tokens, eos_token_id=presets.EOS, pad_token_id=presets.PAD,
            num_samples=p.samples, temperature=p.temperature, top_k=p.top_k,
        ),
        ppo=PPOConfig(
            kl_coef=p.kl_coef, ppo_epochs=p.ppo_epochs, minibatch_size=p.minibatch,
            normalization="reference",
        ),
        optimizer=OptimizerConfig(
            learning_rate=p.learning_rate, eps=1e-5, max_grad_norm=p.max_grad_norm,
            total_steps=100 * p.ppo_epochs,
        ),
        reward_fn=reward_fn,
        pad_id=presets.PAD,
    )
    frozen = {"ref": policy_params, "rewards": rm_params}
    batch = {k: jnp.asarray(v) for k, v in presets.random_batch(p, seed).items()}
    counts = {"policy": count_params(policy_params), "value": count_params(value_params)}
    counts.update({name: count_params(params) for name, params in rm_params.items()})
    return setup, frozen, policy_params, value_params, batch, counts


def measure_fgjax(p: presets.Preset, iterations: int, repeats: int, seed: int = 0) -> dict:
    """Every fgjax figure of the table (seconds, GFLOP/s, counts)."""
    log = CompileLog()
    try:
        return _measure(log, p, iterations, repeats, seed)
    finally:
        log.close()


def _measure(log: CompileLog, p: presets.Preset, iterations: int, repeats: int, seed: int):
    setup, frozen, policy_params, value_params, batch, counts = build(p, seed)
    key = jax.random.key(seed + 1)
    out = {"params": counts}

    # The full iteration: compile (first call) and steady state; no compile after the first.
    step = make_ppo_iteration(setup)
    state = init_state(setup, policy_params, value_params)
    jax.block_until_ready(state)
    mark = log.mark()
    start = time.perf_counter()
    state, metrics = jax.block_until_ready(step(state, frozen, batch, key))
    out["first_call"] = time.perf_counter() - start
    out["compile"] = log.seconds_since(mark)
    mark = log.mark()
    times = []
    for _ in range(iterations):
        start = time.perf_counter()
        state, metrics = jax.block_until_ready(step(state, frozen, batch, key))
        times.append(time.perf_counter() - start)
    out["recompiles"] = log.compilations_since(mark)
    out["iteration"] = statistics.median(times)
    out["response_length"] = float(metrics["response/length"])

    # The phases, each compiled on its own with the same setup.
    params = init_state(setup, policy_params, value_params).params

    def score_and_advantages(params, frozen, batch, sampled):
        experience, score_metrics = score_rollout(setup, params, frozen, batch, sampled)
        return compute_advantages(setup, experience), score_metrics

    rollout_fn = jax.jit(lambda params, batch, key: rollout(setup, params, batch, key))
    score_fn = jax.jit(score_and_advantages)
    update_fn = jax.jit(lambda state, experience, key: update(setup, state, experience, key))
    sampled = jax.block_until_ready(rollout_fn(params, batch, key))
    experience, _ = jax.block_until_ready(score_fn(params, frozen, batch, sampled))
    phase_state = init_state(setup, policy_params, value_params)
    jax.block_until_ready(update_fn(phase_state, experience, key))
    out["rollout"] = median_seconds(lambda: rollout_fn(params, batch, key), repeats)
    out["score"] = median_seconds(lambda: score_fn(params, frozen, batch, sampled), repeats)
    out["update"] = median_seconds(lambda: update_fn(phase_state, experience, key), repeats)

    # XLA counts a scan body once, so take one epoch over the whole rollout as one minibatch
    # (trip counts 1, the same FLOPs as the epoch's minibatches) and multiply by the epochs.
    one_epoch = dataclasses.replace(
        setup, ppo=dataclasses.replace(setup.ppo, ppo_epochs=1, minibatch_size=p.rows)
    )
    compiled = jax.jit(lambda s, e, k: update(one_epoch, s, e, k)).lower(
        phase_state, experience, key
    ).compile()
    out["update_flops"] = flops(compiled) * p.ppo_epochs
    out["update_gflops"] = out["update_flops"] / out["update"] / 1e9
    out["matmul_gflops"] = matmul_gflops(2048 if p.vocab > 1000 else 256, repeats)
    return out


def measure_torch(preset: str, iterations: int, repeats: int) -> dict:
    """``torch_reference.py`` in a fresh interpreter, so that neither runtime's threads or
    memory affect the other (torch inside this process, after the JAX phases, once took 202 s
    per qa_release iteration against 6.9 s on its own; the load differed too)."""
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "torch_reference.py")
    command = [sys.executable, script, "--preset", preset, "--iterations", str(iterations),
               "--repeats", str(repeats), "--json"]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode:
        raise RuntimeError(f"torch_reference.py failed ({result.returncode}):\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def fmt_ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1e3:,.1f}"


def table(p: presets.Preset, name: str, ours: dict, torch_times: dict | None) -> str:
    phases = [
        ("rollout", "rollout (sample)"),
        ("score", "score + advantages"),
        ("update", "update (epochs x minibatches)"),
        ("iteration", "full ppo_iteration"),
    ]
    head = ["phase", "fgjax ms"] + (["torch ms", "speed-up"] if torch_times else [])
    rows = []
    for key, label in phases:
        row = [label, fmt_ms(ours[key])]
        if torch_times:
            row += [fmt_ms(torch_times[key]), f"{torch_times[key] / ours[key]:.1f}x"]
        rows.append(row)
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
    line = lambda r: "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                               for i, (c, w) in enumerate(zip(r, widths, strict=True)))
    sizes = (f"{p.family}: d {p.d_model}, {p.layers} layers, vocab {p.vocab:,}; "
             f"{p.prompts} prompts x {p.samples} samples, prompt {p.prompt_len}, "
             f"{p.new_tokens} new tokens, {p.ppo_epochs} epochs, minibatch {p.minibatch}")
    counts = ", ".join(f"{k} {v / 1e6:.2f}M" for k, v in ours["params"].items())
    lines = [
        f"PPO step benchmark, preset {name} ({sizes})",
        f"parameters: {counts}",
        f"jax {jax.__version__} on {jax.devices()[0].platform} x{jax.device_count()}, "
        f"{os.cpu_count()} cores; load average {os.getloadavg()[0]:.2f}; "
        f"mean response length {ours['response_length']:.1f}",
        "",
        line(head),
        line(["-" * w for w in widths]),
        *[line(r) for r in rows],
        "",
        f"compile full ppo_iteration: {ours['compile']:.1f} s traced+lowered+compiled "
        f"(first call {ours['first_call']:.1f} s)",
        f"compilations after the first iteration: {ours['recompiles']}",
        f"update: {ours['update_flops'] / 1e9:,.1f} GFLOP in {fmt_ms(ours['update'])} ms = "
        f"{ours['update_gflops']:.1f} GFLOP/s; matmul peak {ours['matmul_gflops']:.1f} GFLOP/s; "
        f"MFU {ours['update_gflops'] / ours['matmul_gflops']:.1%}",
    ]
    if torch_times:
        lines.append(
            f"torch {torch_times['version']} with {torch_times['threads']} threads; "
            f"overall fgjax speed-up {torch_times['iteration'] / ours['iteration']:.1f}x "
            "(DESIGN target >= 8x)"
        )
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", choices=sorted(presets.PRESETS), default="qa_release")
    parser.add_argument("--iterations", type=int, default=5, help="steady-state iterations")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per phase")
    parser.add_argument("--compare-torch", action="store_true")
    parser.add_argument("--smoke", action="store_true", help="= --preset smoke, 2 repeats")
    args = parser.parse_args(argv)
    name = "smoke" if args.smoke else args.preset
    iterations, repeats = (2, 2) if args.smoke else (args.iterations, args.repeats)
    p = presets.PRESETS[name]
    if args.compare_torch and p.family != "t5":
        parser.error(f"--compare-torch reproduces the release's T5 loop; preset {name!r} is "
                     f"{p.family}")
    ours = measure_fgjax(p, iterations, repeats)
    torch_times = None
    if args.compare_torch:
        torch_times = measure_torch(name, iterations, repeats)
    print(table(p, name, ours, torch_times))


if __name__ == "__main__":
    main()
