"""QA-Feedback split files in a data directory: paths, validated loading, download.

File layout of the public release (``tasks/qa_feedback/data/`` of allenai/FineGrainedRLHF):
prompts ``{train,train_1k,dev,test}.json`` and feedback ``{train,dev}_feedback.json``.
"""

from __future__ import annotations

import os
import pathlib
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence

from fgjax.data import qa_feedback_schema as schema
from fgjax.errors import UserError

RELEASE_BASE_URL = (
    "https://raw.githubusercontent.com/allenai/FineGrainedRLHF/main/tasks/qa_feedback/data/"
)
PROMPT_SPLITS = ("train", "train_1k", "dev", "test")
FEEDBACK_SPLITS = ("train", "dev")
DOWNLOAD_TIMEOUT_S = 60.0


class DownloadError(UserError, RuntimeError):
    """A release file could not be fetched (network failure, HTTP error, bad URL)."""


def prompts_path(data_dir: str | os.PathLike, split: str) -> pathlib.Path:
    if split not in PROMPT_SPLITS:
        raise ValueError(f"unknown prompt split {split!r}; known: {list(PROMPT_SPLITS)}")
    return pathlib.Path(data_dir) / f"{split}.json"


def feedback_path(data_dir: str | os.PathLike, split: str) -> pathlib.Path:
    if split not in FEEDBACK_SPLITS:
        raise ValueError(f"no feedback file for split {split!r}; known: {list(FEEDBACK_SPLITS)}")
    return pathlib.Path(data_dir) / f"{split}_feedback.json"


def load_prompts_split(data_dir: str | os.PathLike, split: str) -> tuple[schema.QAPrompt, ...]:
    """Validated records of ``{data_dir}/{split}.json``."""
    return schema.load_prompts(prompts_path(data_dir, split))


def load_feedback_split(
    data_dir: str | os.PathLike, split: str
) -> tuple[schema.FeedbackRecord, ...]:
    """Validated records of ``{data_dir}/{split}_feedback.json``."""
    return schema.load_feedback(feedback_path(data_dir, split))


def release_files(split: str) -> tuple[str, ...]:
    """The release's file names for one split (prompts first, then feedback if any)."""
    if split not in PROMPT_SPLITS:
        raise ValueError(f"unknown split {split!r}; known: {list(PROMPT_SPLITS)}")
    names = [prompts_path(".", split).name]
    if split in FEEDBACK_SPLITS:
        names.append(feedback_path(".", split).name)
    return tuple(names)


def fetch_url(url: str) -> bytes:
    """Default fetcher (urllib: http(s) and file:// URLs); failures become DownloadError."""
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
            return response.read()
    except (urllib.error.URLError, OSError, ValueError) as err:
        reason = getattr(err, "reason", err)
        raise DownloadError(f"could not download {url}: {reason}") from err


def _write_atomically(path: pathlib.Path, payload: bytes) -> None:
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as tmp:
            tmp.write(payload)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        pathlib.Path(tmp_name).unlink(missing_ok=True)
        raise


def download(
    data_dir: str | os.PathLike,
    splits: Sequence[str] = ("train", "dev", "test"),
    *,
    base_url: str = RELEASE_BASE_URL,
    fetch: Callable[[str], bytes] = fetch_url,
    overwrite: bool = False,
) -> list[pathlib.Path]:
    """Fetches the release files of ``splits`` into ``data_dir``; returns the paths written.

    Every file is fetched and validated against the schema before any is written, and each is
    written to a temporary file then renamed, so a failure leaves no partial files. Files
    already present are kept unless ``overwrite``. ``fetch(url) -> bytes`` is injectable
    (tests pass a local one or use ``file://`` base URLs); it raises DownloadError on failure.
    """
    data_dir = pathlib.Path(data_dir)
    names = [name for split in splits for name in release_files(split)]
    wanted = [name for name in names if overwrite or not (data_dir / name).exists()]
    base_url = base_url if base_url.endswith("/") else base_url + "/"
    payloads = {}
    for name in wanted:
        url = base_url + name
        payload = fetch(url)
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError as err:
            raise schema.QAFeedbackFormatError(url, None, None, f"not UTF-8 text ({err})") from None
        raw = schema.decode_json_text(text, url)
        parse = schema.parse_feedback if name.endswith("_feedback.json") else schema.parse_prompts
        parse(raw, url)
        payloads[name] = payload
    data_dir.mkdir(parents=True, exist_ok=True)
    for name, payload in payloads.items():
        _write_atomically(data_dir / name, payload)
    return [data_dir / name for name in wanted]
