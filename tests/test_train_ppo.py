"""``python -m fgjax.train`` end to end on tiny checkpoints made here (QA-Feedback dev prompts)."""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
import transformers
from conftest import QA_FEEDBACK_DIR, REPO_ROOT

from fgjax import train
from fgjax.data.qa_feedback_files import load_prompts_split
from fgjax.metrics import read_jsonl
from fgjax.models import init_model, load_pretrained, save_pretrained
from fgjax.tokenizers import train_tokenizer

POSITIONS = 160


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpts")
    prompts = load_prompts_split(QA_FEEDBACK_DIR, "dev")
    texts = [p.text for p in prompts] + [a for p in prompts for a in p.answers]
    tokenizer = train_tokenizer(texts, "bpe", 400, str(root / "tok"))
    vocab = len(tokenizer)
    paths = {"tok": str(root / "tok")}
    for i, (name, head, labels) in enumerate(
        [("policy", "lm", 2), ("r1", "token_cls", 2), ("r2", "token_cls", 2), ("r3", "seq_reg", 1)]
    ):
        config = transformers.GPT2Config(
            vocab_size=vocab, n_positions=POSITIONS, n_embd=32, n_layer=1, n_head=2,
            num_labels=labels, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
        model, params = init_model(config, jax.random.key(i), head=head)
        save_pretrained(model, params, str(root / name))
        paths[name] = str(root / name)
    (root / "r3" / "reward_stats.json").write_text(json.dumps({"mean": 0.0, "std": 0.5}))
    return paths


def argv(paths, workdir, *extra):
    return [
        "fgjax.train", f"--config={REPO_ROOT / 'configs' / 'qa_tiny.py'}", f"--workdir={workdir}",
        f"--config.data.dir={QA_FEEDBACK_DIR}", f"--config.model.tokenizer={paths['tok']}",
        f"--config.model.policy={paths['policy']}",
        f"--config.rewards.r1.checkpoint={paths['r1']}",
        f"--config.rewards.r2.checkpoint={paths['r2']}",
        f"--config.rewards.r3.checkpoint={paths['r3']}",
        "--config.num_iterations=2", "--config.eval_every=2", "--config.checkpoint.every=2",
        "--config.data.max_prompt_len=64", "--config.data.max_rm_prompt_len=64",
        "--config.sampling.max_new_tokens=8", "--config.ppo.epochs=1",
        "--config.logging.progress=False", "--config.logging.plot=False",
        "--config.logging.tensorboard=False", *extra,
    ]


def test_train_runs_logs_and_exports(checkpoints, tmp_path):
    train.main(argv(checkpoints, tmp_path))
    lines = read_jsonl(str(tmp_path / "metrics.jsonl"))
    assert [line["step"] for line in lines][-1] == 2
    last = lines[-1]
    for key in ("reward/r1", "reward/r2", "reward/r3", "reward/raw", "kl/mean",
                "loss/policy", "loss/value", "eval/reward", "eval/reward/r1_ok_ratio"):
        assert key in last, key
    model, params = load_pretrained(str(tmp_path / "policy_hf"))
    assert model.family == "gpt2"


def test_vocabulary_mismatch_is_one_line_error(checkpoints, tmp_path, capsys):
    config = transformers.GPT2Config(vocab_size=50, n_positions=POSITIONS, n_embd=32, n_layer=1,
                                     n_head=2, num_labels=2)
    model, params = init_model(config, jax.random.key(0), head="token_cls")
    save_pretrained(model, params, str(tmp_path / "small_rm"))
    with pytest.raises(SystemExit) as exit_info:
        train.main(argv(checkpoints, tmp_path / "run",
                        f"--config.rewards.r1.checkpoint={tmp_path / 'small_rm'}"))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "reward model 'r1'" in err[0] and "vocabulary" in err[0]


def test_indivisible_minibatch_names_the_key(checkpoints, tmp_path, capsys):
    with pytest.raises(SystemExit):
        train.main(argv(checkpoints, tmp_path, "--config.ppo.minibatch_size=5"))
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "ppo.minibatch_size" in err[0]


def _policy_arrays(workdir):
    _, params = load_pretrained(str(workdir / "policy_hf"))
    return [np.asarray(x) for x in jax.tree.leaves(params)]


@pytest.mark.slow
def test_real_ppo_sigterm_then_resume_equals_an_uninterrupted_run(checkpoints, tmp_path):
    """The PPO job itself (not the toy step): 6 iterations straight vs. a process that gets
    SIGTERM once iteration 3 is logged, saves, exits 0, and is resumed to 6."""
    common = ("--config.num_iterations=6", "--config.eval_every=0",
              "--config.checkpoint.every=2", "--config.checkpoint.keep_best=0")
    reference_dir, resumed_dir = tmp_path / "reference", tmp_path / "resumed"
    train.main(argv(checkpoints, reference_dir, *common))

    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8",
               JAX_PLATFORMS="cpu")
    command = [sys.executable, "-m", "fgjax.train", *argv(checkpoints, resumed_dir, *common)[1:]]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    metrics_file = resumed_dir / "metrics.jsonl"
    deadline = time.monotonic() + 240
    while process.poll() is None and time.monotonic() < deadline:
        if metrics_file.exists() and len(metrics_file.read_text().splitlines()) >= 3:
            process.send_signal(signal.SIGTERM)
            break
        time.sleep(0.05)
    _, stderr = process.communicate(timeout=240)
    assert process.returncode == 0, stderr[-3000:]
    assert "preempted: saved iteration" in stderr
    stopped_at = len(read_jsonl(str(metrics_file)))
    assert 3 <= stopped_at < 6  # stopped early, after iteration 3

    train.main(argv(checkpoints, resumed_dir, *common))  # resumes from the workdir
    strip = lambda rows: [{k: v for k, v in r.items() if not k.startswith("perf/")} for r in rows]
    assert strip(read_jsonl(str(metrics_file))) == strip(
        read_jsonl(str(reference_dir / "metrics.jsonl")))
    for a, b in zip(_policy_arrays(resumed_dir), _policy_arrays(reference_dir), strict=True):
        np.testing.assert_array_equal(a, b)  # bitwise on CPU
