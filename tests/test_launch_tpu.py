"""launch_tpu.sh: the gcloud commands of a dry run, option checking and --help."""

import shlex
import shutil
import subprocess

import pytest
from conftest import REPO_ROOT

SCRIPT = REPO_ROOT / "launch_tpu.sh"


def launch(*args):
    return subprocess.run(
        ["bash", str(SCRIPT), *args], capture_output=True, text=True, cwd=REPO_ROOT, check=False
    )


def dry_run_commands(*args):
    result = launch("--dry-run", *args)
    assert result.returncode == 0, result.stderr
    lines = [line[2:] for line in result.stdout.splitlines() if line.startswith("+ ")]
    return [shlex.split(line) for line in lines]


def test_dry_run_v4_32_with_override():
    cmds = dry_run_commands(
        "--name", "fg", "--zone", "us-central2-b", "--type", "v4-32", "--project", "proj",
        "--config", "configs/qa_paper.py", "--workdir", "gs://bucket/run",
        "--", "--config.ppo.kl_coef=0.2",
    )
    create, archive, scp, unpack, install, train = cmds
    assert create[:5] == ["gcloud", "compute", "tpus", "tpu-vm", "create"]
    assert {"fg", "--accelerator-type=v4-32", "--version=tpu-ubuntu2204-base",
            "--zone=us-central2-b", "--project=proj"} <= set(create)
    assert archive[0] == "git" and "archive" in archive
    assert scp[3:5] == ["tpu-vm", "scp"] and "--worker=all" in scp
    for ssh in (unpack, install, train):
        assert ssh[3:5] == ["tpu-vm", "ssh"] and "--worker=all" in ssh
    assert "pip install -e ." in _remote(install)
    assert shlex.split(_remote(train)) == [
        "cd", "fgjax", "&&", "python3", "-m", "fgjax.train", "--config=configs/qa_paper.py",
        "--workdir=gs://bucket/run", "--config.ppo.kl_coef=0.2",
    ]


def _remote(cmd):
    (command,) = [a for a in cmd if a.startswith("--command=")]
    return command[len("--command="):]


def test_dry_run_queued_spot_git_source():
    cmds = dry_run_commands(
        "--name", "fg", "--zone", "z", "--type", "v4-32", "--config", "configs/tiny.py",
        "--queued", "--spot", "--source", "git", "--repo", "https://example.invalid/fgjax.git",
    )
    assert cmds[0][3:5] == ["queued-resources", "create"]
    assert "--node-id=fg" in cmds[0] and "--spot" in cmds[0]
    assert cmds[1][3:5] == ["queued-resources", "describe"]
    assert "git clone" in _remote(cmds[2])


@pytest.mark.parametrize(
    "args, message",
    [
        (["--zone", "z", "--type", "v4-8", "--config", "c.py"], "missing --name"),
        (["--name", "n", "--zone", "z", "--type", "v4-8", "--config", "c.py", "--bogus"],
         "unknown option --bogus"),
        (["--name", "n", "--zone", "z", "--type", "v4-8", "--config", "c.py", "--source", "git"],
         "needs --repo"),
    ],
)
def test_bad_arguments(args, message):
    result = launch("--dry-run", *args)
    assert result.returncode == 2
    assert message in result.stderr


def test_help_lists_every_option():
    result = launch("--help")
    assert result.returncode == 0
    for option in ("--name", "--zone", "--type", "--config", "--runtime", "--project", "--workdir",
                   "--queued", "--spot", "--source", "--repo", "--ref", "--skip-create",
                   "--skip-install", "--dry-run"):
        assert option in result.stdout


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed")
def test_shellcheck_clean():
    result = subprocess.run(["shellcheck", str(SCRIPT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout
