"""``python -m fgjax.train`` end to end on tiny checkpoints made here (QA-Feedback dev prompts)."""

import json

import jax
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
