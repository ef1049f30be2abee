"""The official release's PPO iteration in PyTorch, for timing against fgjax on the same sizes.

Written from the release's semantics (``fgrlhf/ppo.py``, ``policy.py``, ``value.py``,
``utils.py`` of allenai/FineGrainedRLHF), on ``transformers`` T5 classes with random weights:

* rollout: HF ``generate`` with sampling (top-k, temperature, ``num_return_sequences``) to
  ``new_tokens``; the decoder start is dropped, rows padded to ``new_tokens``, mask = not pad;
* score: forward passes of policy (old log-probs), reference (log-probs) and value model
  (T5 + Linear-GELU-Linear on the last decoder state), each reward model on the concatenated
  ``[its prompt ; response]`` rows built on the host, segment ends found by a per-token loop,
  KL penalty, the release's whitening (with its square-root-of-std quirk) and GAE by a Python
  loop over time steps;
* update: ``ppo_epochs`` epochs walking the rollout in minibatches, each loss weighted by its
  mean length over the rollout's, gradients accumulated, clipped per model, one Adam step (and
  scheduler step) per epoch.

    python experiments/benchmarks/torch_reference.py [--preset qa_release] [--iterations N]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import time
from itertools import chain

import torch
import torch.nn.functional as F
import transformers

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import presets  # noqa: E402

MIN_SUBSENTENCE_WORDS = 5


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim=None) -> torch.Tensor:
    return (x * mask).sum(dim) / mask.sum(dim)


def release_whiten(values: torch.Tensor, mask: torch.Tensor, shift_mean: bool) -> torch.Tensor:
    """The release's whitening: masked mean and *std* ``s``, scaled by ``1 / sqrt(s + 1e-8)``."""
    mean = masked_mean(values, mask)
    std = torch.sqrt(masked_mean((values - mean) ** 2, mask))
    whitened = (values - mean) * torch.rsqrt(std + 1e-8)
    return whitened if shift_mean else whitened + mean


class ValueModel(torch.nn.Module):
    """T5 with a Linear-GELU-Linear head on the last decoder hidden state."""

    def __init__(self, config):
        super().__init__()
        self.model = transformers.T5ForConditionalGeneration(config)
        d = config.d_model
        self.linear = torch.nn.Sequential(
            torch.nn.Linear(d, d), torch.nn.GELU(), torch.nn.Linear(d, 1)
        )

    def forward_pass(self, prompt_ids, prompt_mask, response_ids, response_mask):
        outputs = self.model(
            input_ids=prompt_ids, attention_mask=prompt_mask,
            labels=response_ids.masked_fill(response_mask == 0, -100),
            output_hidden_states=True,
        )
        values = self.linear(outputs.decoder_hidden_states[-1]).squeeze(-1)
        return values * response_mask


def policy_logprobs(model, prompt_ids, prompt_mask, response_ids, response_mask):
    """Per-token log-probs ``[B, N]`` (masked) and entropies of the sampled responses."""
    logits = model(
        input_ids=prompt_ids, attention_mask=prompt_mask,
        labels=response_ids.masked_fill(response_mask == 0, -100),
    ).logits
    logprobs = F.log_softmax(logits, dim=-1)
    taken = torch.gather(logprobs, 2, response_ids[:, :, None]).squeeze(2)
    entropy = -(logprobs.exp() * logprobs).sum(-1)
    return taken * response_mask, entropy * response_mask


def concatenate(prompt_ids, prompt_mask, response_ids, response_mask, append_eos: bool):
    """Host-side ``[prompt real tokens ; response real tokens (; eos)]`` rows, right-padded,
    and each row's prompt length (the release re-tokenises the concatenated texts)."""
    rows, lengths = [], []
    for p_ids, p_mask, r_ids, r_mask in zip(
        prompt_ids.tolist(), prompt_mask.tolist(), response_ids.tolist(), response_mask.tolist(),
        strict=True,
    ):
        prompt = [t for t, m in zip(p_ids, p_mask, strict=True) if m]
        response = [t for t, m in zip(r_ids, r_mask, strict=True) if m]
        if append_eos:
            response = [t for t in response if t != presets.EOS] + [presets.EOS]
        rows.append(prompt + response)
        lengths.append(len(prompt))
    width = max(len(r) for r in rows)
    ids = torch.tensor([r + [presets.PAD] * (width - len(r)) for r in rows])
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
    return ids, mask, lengths


def segment_ends(response_ids, response_mask, end_ids: set[int], cut_ids: set[int]):
    """Per-token loop: a segment ends at a token of ``end_ids``, at a token of ``cut_ids`` once
    the segment has ``MIN_SUBSENTENCE_WORDS`` tokens, and at the last response token."""
    ends = []
    for ids, mask in zip(response_ids.tolist(), response_mask.tolist(), strict=True):
        length, row, words = sum(mask), [], 0
        for t, token in enumerate(ids):
            words += 1
            end = t < length and (
                token in end_ids or t == length - 1
                or (token in cut_ids and words >= MIN_SUBSENTENCE_WORDS)
            )
            row.append(end)
            words = 0 if end else words
        ends.append(row)
    return ends


class ReleaseLoop:
    """Models, optimizer and one PPO iteration split into rollout / score / update."""

    def __init__(self, p: presets.Preset, seed: int = 0):
        torch.manual_seed(seed)
        self.p = p
        config = presets.policy_config(p)
        self.policy = transformers.T5ForConditionalGeneration(config)
        self.ref = copy.deepcopy(self.policy)
        self.value = ValueModel(config)
        self.rms = {}
        for name in p.reward_models:
            head = presets.REWARD_MODELS[name][0]
            cls = (transformers.T5ForTokenClassification if head == "token_cls"
                   else transformers.T5ForSequenceClassification)
            self.rms[name] = cls(presets.reward_config(p, name)).eval()
        for model in (self.ref, *self.rms.values()):
            model.requires_grad_(False)
        self.optimizer = torch.optim.Adam(
            chain(self.policy.parameters(), self.value.parameters()), lr=p.learning_rate, eps=1e-5
        )
        total = 100 * p.ppo_epochs
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: max(0.0, (total - step) / total)
        )
        self.sentence_ids, self.subsentence_ids = presets.segment_end_ids(p.vocab)
        self.batch = {k: torch.from_numpy(v).long() for k, v in presets.random_batch(p).items()}

    @torch.no_grad()
    def rollout(self) -> dict:
        p, batch = self.p, self.batch
        self.policy.eval()
        generated = self.policy.generate(
            input_ids=batch["prompt_ids"], attention_mask=batch["prompt_mask"],
            max_new_tokens=p.new_tokens, do_sample=True, top_k=p.top_k,
            temperature=p.temperature, num_return_sequences=p.samples,
        )[:, 1:]
        generated = F.pad(generated, (0, p.new_tokens - generated.size(1)), value=presets.PAD)
        repeat = lambda x: x.repeat_interleave(p.samples, dim=0)
        return {
            "prompt_ids": repeat(batch["prompt_ids"]),
            "prompt_mask": repeat(batch["prompt_mask"]),
            "response_ids": generated,
            "response_mask": (generated != presets.PAD).long(),
        }

    def rewards(self, r: dict) -> torch.Tensor:
        """The dense reward ``[R, N]``: R1/R2 +/- at segment ends, R3 at the last token."""
        p, ids, mask = self.p, r["response_ids"], r["response_mask"]
        dense = torch.zeros(ids.shape)
        lengths = mask.sum(1).tolist()
        for name, model in self.rms.items():
            head, level, rm_input, magnitude = presets.REWARD_MODELS[name]
            prompt_ids = self.batch[f"{rm_input}_ids"].repeat_interleave(p.samples, dim=0)
            prompt_mask = self.batch[f"{rm_input}_mask"].repeat_interleave(p.samples, dim=0)
            rows, row_mask, prompt_lengths = concatenate(
                prompt_ids, prompt_mask, ids, mask, append_eos=head == "seq_reg"
            )
            logits = model(input_ids=rows, attention_mask=row_mask).logits
            if head == "seq_reg":
                for i, n in enumerate(lengths):
                    if n:
                        dense[i, n - 1] += logits[i, 0].item() * presets.R3_SCALE
                continue
            cut_ids = self.subsentence_ids if level == "subsentence" else set()
            ends = segment_ends(ids, mask, self.sentence_ids, cut_ids)
            for i, row in enumerate(ends):
                for t, end in enumerate(row):
                    if end:
                        label = logits[i, prompt_lengths[i] + t]
                        error = label[1] > label[0]
                        dense[i, t] += -magnitude if error else magnitude
        return dense

    @torch.no_grad()
    def score(self, r: dict) -> dict:
        p = self.p
        self.value.eval()
        inputs = (r["prompt_ids"], r["prompt_mask"], r["response_ids"], r["response_mask"])
        mask = r["response_mask"].float()
        r["old_logprobs"], _ = policy_logprobs(self.policy, *inputs)
        ref_logprobs, _ = policy_logprobs(self.ref, *inputs)
        r["values"] = self.value.forward_pass(*inputs)
        kl = r["old_logprobs"] - ref_logprobs
        rewards = self.rewards(r) - p.kl_coef * kl
        whitened = release_whiten(rewards, mask, shift_mean=False)
        # GAE over the longest response, one time step per Python iteration, as the release.
        values, last, reversed_advantages = r["values"], 0.0, []
        gen_length = int(mask.sum(1).max().item())
        for t in reversed(range(gen_length)):
            next_values = values[:, t + 1] if t < gen_length - 1 else 0.0
            delta = whitened[:, t] + 1.0 * next_values - values[:, t]
            last = delta + 1.0 * 0.95 * last
            reversed_advantages.append(last)
        advantages = torch.stack(reversed_advantages[::-1], dim=1)
        advantages = F.pad(advantages, (0, rewards.size(1) - gen_length), value=0.0)
        r["returns"] = advantages + values
        r["advantages"] = release_whiten(advantages, mask, shift_mean=True)
        return r

    def minibatch_loss(self, mb: dict, mean_length: float) -> torch.Tensor:
        mask = mb["response_mask"].float()
        inputs = (mb["prompt_ids"], mb["prompt_mask"], mb["response_ids"], mb["response_mask"])
        weight = mask.sum(1).mean().item() / mean_length
        logprobs, _ = policy_logprobs(self.policy, *inputs)
        ratio = torch.exp(logprobs - mb["old_logprobs"])
        advantages = mb["advantages"]
        pg = torch.max(-advantages * ratio, -advantages * torch.clamp(ratio, 0.8, 1.2))
        pg_loss = masked_mean(pg, mask) * weight
        values = self.value.forward_pass(*inputs)
        clipped = torch.clamp(values, mb["values"] - 0.2, mb["values"] + 0.2)
        vf = torch.max((values - mb["returns"]) ** 2, (clipped - mb["returns"]) ** 2)
        vf_loss = 0.5 * masked_mean(vf, mask) * weight
        return pg_loss + vf_loss

    def update(self, r: dict) -> None:
        p = self.p
        self.policy.train()
        self.value.train()
        keys = ("prompt_ids", "prompt_mask", "response_ids", "response_mask", "old_logprobs",
                "values", "returns", "advantages")
        for _ in range(p.ppo_epochs):
            self.optimizer.zero_grad()
            mean_length = r["response_mask"].sum(1).float().mean().item()
            for start in range(0, p.rows, p.minibatch):
                mb = {k: r[k][start:start + p.minibatch] for k in keys}
                self.minibatch_loss(mb, mean_length).backward()
            torch.nn.utils.clip_grad_norm_(self.policy.parameters(), p.max_grad_norm)
            torch.nn.utils.clip_grad_norm_(self.value.parameters(), p.max_grad_norm)
            self.optimizer.step()
            self.scheduler.step()


def measure(p: presets.Preset, iterations: int, repeats: int, threads: int = 2) -> dict:
    """Median seconds per phase and per iteration over ``max(iterations, repeats)`` iterations
    (after one warm-up iteration)."""
    torch.set_num_threads(threads)
    loop = ReleaseLoop(p)
    times = {"rollout": [], "score": [], "update": [], "iteration": []}
    for i in range(1 + max(iterations, repeats)):
        t0 = time.perf_counter()
        r = loop.rollout()
        t1 = time.perf_counter()
        r = loop.score(r)
        t2 = time.perf_counter()
        loop.update(r)
        t3 = time.perf_counter()
        if i:  # the first iteration warms up allocators and caches
            for key, seconds in (("rollout", t1 - t0), ("score", t2 - t1),
                                 ("update", t3 - t2), ("iteration", t3 - t0)):
                times[key].append(seconds)
    out = {k: statistics.median(v) for k, v in times.items()}
    out["threads"] = torch.get_num_threads()
    out["version"] = torch.__version__
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", choices=["qa_release", "smoke"], default="qa_release")
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", action="store_true", help="one JSON line (for ppo_step.py)")
    args = parser.parse_args(argv)
    out = measure(presets.PRESETS[args.preset], args.iterations, args.repeats, args.threads)
    if args.json:
        print(json.dumps(out))
        return
    for key in ("rollout", "score", "update", "iteration"):
        print(f"{key:10s} {out[key] * 1e3:10.1f} ms")
    print(f"torch {out['version']}, {out['threads']} threads")

if __name__ == "__main__":
    main()
