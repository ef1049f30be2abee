"""Generation speed: ``fgjax.rollout.sample`` vs ``transformers`` PyTorch ``generate`` on the
same tiny GPT-2 (same weights), top-k sampling, EOS disabled so every row makes all its
tokens; prints one table (tokens/s = rows x new tokens / median seconds), no assertions.

    python experiments/benchmarks/generation.py [--batch 8 32] [--new-tokens 64] [--smoke]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import torch
import transformers

from fgjax.models import build_model
from fgjax.models import gpt2 as gpt2_family
from fgjax.rollout import SamplingConfig, sample

PAD = 0
NEVER = -1  # an eos id that no sampled token equals


def tiny_gpt2(vocab: int, width: int, layers: int, positions: int) -> transformers.GPT2Config:
    return transformers.GPT2Config(
        vocab_size=vocab, n_positions=positions, n_embd=width, n_layer=layers, n_head=4,
        bos_token_id=None, eos_token_id=None, pad_token_id=PAD,
    )


def models(config: transformers.GPT2Config, seed: int = 0):
    """The torch model and the fgjax ``(model, params)`` holding the same weights."""
    torch.manual_seed(seed)
    torch_model = transformers.GPT2LMHeadModel(config).eval()
    tensors = {k: v.detach().numpy() for k, v in torch_model.state_dict().items()}
    model = build_model(config.to_dict(), "lm")
    params = gpt2_family.params_from_hf(tensors, model.config, "lm")
    return torch_model, model, jax.tree.map(jnp.asarray, params)


def median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(batch: int, prompt_len: int, new_tokens: int, top_k: int, repeats: int,
            torch_model, model, params, vocab: int) -> dict:
    rng = np.random.default_rng(batch)
    prompts = rng.integers(1, vocab, size=(batch, prompt_len)).astype(np.int32)
    mask = np.ones_like(prompts)
    cfg = SamplingConfig(max_new_tokens=new_tokens, eos_token_id=NEVER, pad_token_id=PAD,
                         temperature=1.0, top_k=top_k)
    sample_fn = jax.jit(lambda params, ids, mask, key: sample(model, params, ids, mask, key, cfg))
    ids_j, mask_j = jnp.asarray(prompts), jnp.asarray(mask)
    keys = iter(jax.random.split(jax.random.key(0), repeats + 1))
    start = time.perf_counter()
    out = jax.block_until_ready(sample_fn(params, ids_j, mask_j, next(keys)))
    compile_s = time.perf_counter() - start
    if int(out.response_mask.sum()) != batch * new_tokens:
        raise RuntimeError("fgjax stopped early although eos is disabled")
    ours = median_seconds(
        lambda: jax.block_until_ready(sample_fn(params, ids_j, mask_j, next(keys))), repeats
    )

    ids_t, mask_t = torch.from_numpy(prompts).long(), torch.from_numpy(mask).long()

    def generate():
        with torch.no_grad():
            return torch_model.generate(
                input_ids=ids_t, attention_mask=mask_t, do_sample=True, top_k=top_k,
                temperature=1.0, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                pad_token_id=PAD,
            )

    if generate().shape[1] != prompt_len + new_tokens:  # also the warm-up
        raise RuntimeError("transformers generate stopped early")
    theirs = median_seconds(generate, repeats)
    tokens = batch * new_tokens
    return {"batch": batch, "compile": compile_s, "fgjax": tokens / ours, "torch": tokens / theirs}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--prompt-len", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--smoke", action="store_true", help="tiny model, batch 2, 4 tokens")
    args = parser.parse_args(argv)
    vocab, width, layers = 8000, 128, 2
    if args.smoke:
        args.batch, args.new_tokens, args.prompt_len, args.repeats = [2], 4, 4, 2
        vocab, width, layers = 64, 16, 1
    torch.set_num_threads(args.threads)
    config = tiny_gpt2(vocab, width, layers, args.prompt_len + args.new_tokens)
    torch_model, model, params = models(config)
    rows = [
        measure(b, args.prompt_len, args.new_tokens, 20, args.repeats, torch_model, model,
                params, vocab)
        for b in args.batch
    ]
    print(f"Generation, GPT-2 d {width}, {layers} layers, vocab {vocab:,}; prompt "
          f"{args.prompt_len}, {args.new_tokens} new tokens, top-k 20, eos off")
    print(f"jax {jax.__version__} ({jax.devices()[0].platform}), torch {torch.__version__} with "
          f"{torch.get_num_threads()} threads, {os.cpu_count()} cores; load average "
          f"{os.getloadavg()[0]:.2f}")
    print()
    print(f"{'batch':>5}  {'fgjax tok/s':>11}  {'torch tok/s':>11}  {'speed-up':>8}  "
          f"{'fgjax compile s':>15}")
    for r in rows:
        print(f"{r['batch']:>5}  {r['fgjax']:>11,.0f}  {r['torch']:>11,.0f}  "
              f"{r['fgjax'] / r['torch']:>7.1f}x  {r['compile']:>15.1f}")


if __name__ == "__main__":
    main()
