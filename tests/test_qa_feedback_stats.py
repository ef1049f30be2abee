"""`python -m fgjax.data.qa_feedback stats`: pinned dev-split figures and the CLI's errors."""

import json
import subprocess
import sys

import pytest

from fgjax.data import qa_feedback
from fgjax.data import qa_feedback_files as files

# Computed once by fgjax (syntok splitter) and checked for plausibility: the data section
# equals REFERENCE.md / NOTES.md; R1 drops exactly the 133 NF-ERR spans under 5 words;
# the holistic pairs are the 1,577 + 1,039 non-tie human preferences.
DEV_STATS = {
    "data": {
        "feedback records": 500, "prompts": 500, "error spans": 1373,
        "  Irrelevant": 909, "  Redundant": 133, "  Incoherent": 16,
        "  Wrong-Grounding": 163, "  Unverifiable": 152,
        "missing-info entries": 842, "  Missing-Answer": 240,
        "  Missing-Major-Auxiliary": 283, "  Missing-Minor-Auxiliary": 319,
    },
    "prediction 1 segments": {"sentences": 1599, "sub-sentences": 2693},
    "R1 relevance (sub-sentence)": {
        "examples kept": 500, "NF-ERR spans dropped (< 5 words)": 133,
        "O": 1335, "NF-ERR": 1358, "ignored": 0,
    },
    "R2 factuality (sentence)": {
        "examples kept": 436, "examples dropped (all ignored)": 64,
        "O": 523, "F-ERR": 277, "ignored": 614,
    },
    "R3 completeness (coverage preferences)": {
        "examples kept": 441, "skipped (no information sentence)": 59,
        "information sentences": 1086,
        "mean coverage, prediction 1": 0.6516, "mean coverage, prediction 2": 0.5505,
        "mean coverage, prediction 3": 0.5533, "mean coverage, prediction 4": 0.5544,
        "first better": 682, "second better": 432, "tie": 1532, "pairs (non-tie)": 1114,
    },
    "holistic (human preferences)": {
        "first better": 1577, "second better": 1039, "tie": 384, "pairs (non-tie)": 2616,
    },
}


def test_dev_stats_pinned(qa_feedback_dir):
    records = files.load_feedback_split(qa_feedback_dir, "dev")
    stats = qa_feedback.compute_stats(records, "syntok", num_prompts=500)
    assert stats == DEV_STATS
    # Internal consistency of the pinned figures.
    assert sum(stats["R1 relevance (sub-sentence)"][k] for k in ("O", "NF-ERR")) == 2693
    r2 = stats["R2 factuality (sentence)"]
    assert r2["O"] + r2["F-ERR"] + r2["ignored"] <= 1599
    r3 = stats["R3 completeness (coverage preferences)"]
    assert r3["first better"] + r3["second better"] + r3["tie"] == 6 * 441


def _run_cli(*args: str, command: str = "stats") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "fgjax.data.qa_feedback", command, *args],
        capture_output=True, text=True, timeout=120,
    )


def test_cli_prints_table_on_a_dev_subset(qa_feedback_dir, tmp_path):
    raw = json.loads(files.feedback_path(qa_feedback_dir, "dev").read_text())
    files.feedback_path(tmp_path, "dev").write_text(json.dumps(raw[:15]))
    result = _run_cli("--data_dir", str(tmp_path), "--split", "dev", "--splitter", "rules")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "(splitter: rules)" in lines[0]
    assert "[R1 relevance (sub-sentence)]" in lines and "[holistic (human preferences)]" in lines
    assert any(line.split() == ["feedback", "records", "15"] for line in lines)
    assert not any("prompts" in line for line in lines)  # no dev.json in this folder


@pytest.mark.parametrize(
    "content, where",
    [
        ("missing gold in record 3", "record 3: field 'gold': missing"),
        ("bad span in record 1", "record 1: field 'feedback.errors[0].start'"),
        ("{not json", "not valid JSON"),
        ("", "file is empty"),
    ],
)
def test_cli_malformed_file_is_one_line_and_nonzero(qa_feedback_dir, tmp_path, content, where):
    raw = json.loads(files.feedback_path(qa_feedback_dir, "dev").read_text())[:5]
    if content.startswith("missing gold"):
        del raw[3]["gold"]
        content = json.dumps(raw)
    elif content.startswith("bad span"):
        raw[1]["feedback"]["errors"][0]["end"] = 10**6
        content = json.dumps(raw)
    path = files.feedback_path(tmp_path, "dev")
    path.write_text(content)
    result = _run_cli("--data_dir", str(tmp_path))
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert lines[0].startswith(f"error: {path}: ") and where in lines[0]


def test_cli_malformed_prompt_file(qa_feedback_dir, tmp_path):
    raw = json.loads(files.feedback_path(qa_feedback_dir, "dev").read_text())[:2]
    files.feedback_path(tmp_path, "dev").write_text(json.dumps(raw))
    files.prompts_path(tmp_path, "dev").write_text(json.dumps([{"question": "q"}]))
    result = _run_cli("--data_dir", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"error: {files.prompts_path(tmp_path, 'dev')}: record 0: field 'text': missing"
    )


def test_cli_download_from_file_url(qa_feedback_dir, tmp_path):
    release = tmp_path / "release"
    release.mkdir()
    raw = json.loads(files.feedback_path(qa_feedback_dir, "dev").read_text())[:3]
    files.feedback_path(release, "dev").write_text(json.dumps(raw))
    files.prompts_path(release, "dev").write_text("[]")
    target = tmp_path / "data"
    args = ["--data_dir", str(target), "--splits", "dev", "--base_url", release.as_uri()]
    result = _run_cli(*args, command="download")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"wrote {target / 'dev.json'}",
                                          f"wrote {target / 'dev_feedback.json'}"]
    assert len(files.load_feedback_split(target, "dev")) == 3
    args[3] = "test"  # test.json is not in the "release"
    result = _run_cli(*args, command="download")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: could not download file://")
