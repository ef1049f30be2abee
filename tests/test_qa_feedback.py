"""QA-Feedback loaders: schema validation, the dev split, download, TFDS round trip."""

import copy
import json
import pathlib

import pytest

from fgjax.data import qa_feedback_files as files
from fgjax.data import qa_feedback_schema as schema

PREDICTION_1 = "Paris is the capital of France. It is also a large city, with many people."


def _feedback_record() -> dict:
    """A small valid feedback record written by hand."""
    return {
        "question": "What is the capital of France?",
        "passages": [
            ["Paris", "Paris is the capital of France.", "It has 2 million people."],
            ["France", "France is a country in Europe."],
        ],
        "gold": "Paris.",
        "prediction 1": PREDICTION_1,
        "prediction 2": "Paris.",
        "prediction 3": "Lyon.",
        "prediction 4": "Paris, France.",
        "feedback": {
            "errors": [
                {"error type": "Irrelevant", "start": 32, "end": 56, "explanation": ""},
                {"error type": "Unverifiable", "start": 57, "end": 74, "explanation": "1-2"},
            ],
            "missing-info": [
                {"error type": "Missing-Answer", "passage_id": 1, "sentence_id": [1]},
                {"error type": "Missing-Minor-Auxiliary", "passage_id": 2, "sentence_id": [0, 1]},
            ],
            "corrected-prediction": "Paris is the capital of France.",
        },
        "preference": [1, 1, 0, 2, 1, 0],
    }


def _prompt_record() -> dict:
    return {
        "question": "What is the capital of France?",
        "text": "question: What is the capital of France? context: wikipage: Paris text: ...",
        "passages": [{"wikipage": "Paris", "content": "Paris is the capital of France."}],
        "answer": ["Paris is the capital of France."],
    }


def _write(tmp_path: pathlib.Path, records, name="dev_feedback.json") -> pathlib.Path:
    path = tmp_path / name
    path.write_text(records if isinstance(records, str) else json.dumps(records))
    return path


def test_valid_hand_written_record_parses(tmp_path):
    (record,) = schema.load_feedback(_write(tmp_path, [_feedback_record()]))
    assert record.predictions[0] == PREDICTION_1
    france = schema.FeedbackPassage("France", ("France is a country in Europe.",))
    assert record.passages[1] == france
    span = record.feedback.errors[1]
    assert (span.error_type, span.start, span.is_factual) == ("Unverifiable", 57, True)
    assert PREDICTION_1[span.start : span.end] == "with many people."
    assert record.feedback.missing_info[1].sentence_ids == (0, 1)
    assert record.preference == (1, 1, 0, 2, 1, 0)
    (prompt,) = schema.load_prompts(_write(tmp_path, [_prompt_record()], "dev.json"))
    assert prompt.passages[0].title == "Paris"
    assert prompt.answers == (_prompt_record()["answer"][0],)


def _set(record: dict, dotted: str, value) -> None:
    *parents, last = dotted.split("/")
    target = record
    for key in parents:
        target = target[int(key)] if isinstance(target, list) else target[key]
    if value is _DELETE:
        del target[last]
    else:
        target[int(last) if isinstance(target, list) else last] = value


_DELETE = object()

# (mutation path, new value, field named in the error, words expected in the problem)
MALFORMED_FEEDBACK = [
    ("question", _DELETE, "question", "missing"),
    ("prediction 3", _DELETE, "prediction 3", "missing"),
    ("feedback/corrected-prediction", _DELETE, "feedback.corrected-prediction", "missing"),
    ("feedback/errors/0/start", _DELETE, "feedback.errors[0].start", "missing"),
    ("gold", 3, "gold", "must be str, got int"),
    ("feedback/errors/1/end", "74", "feedback.errors[1].end", "must be int, got str"),
    ("feedback/errors/1/start", True, "feedback.errors[1].start", "must be int, got bool"),
    ("feedback/errors", {}, "feedback.errors", "must be list, got dict"),
    ("feedback", None, "feedback", "must be dict, got null"),
    ("passages/0/1", ["x"], "passages[0][1]", "must be str, got list"),
    ("passages/1", [], "passages[1]", "empty list"),
    ("feedback/errors/1/end", 200, "feedback.errors[1].start", "0 <= start < end <= len"),
    ("feedback/errors/0/start", -1, "feedback.errors[0].start", "0 <= start < end"),
    ("feedback/errors/0/start", 57, "feedback.errors[0].start", "start < end"),
    ("feedback/errors/0/error type", "Wrong", "feedback.errors[0].error type", "unknown value"),
    ("feedback/missing-info/0/error type", "Missing", "feedback.missing-info[0].error type",
     "unknown value"),
    ("preference", [1, 1, 0, 2, 1], "preference", "must hold 6 values, got 5"),
    ("preference", [1, 1, 0, 2, 1, 0, 0], "preference", "must hold 6 values, got 7"),
    ("preference/3", 3, "preference[3]", "unknown value 3"),
    ("preference/0", "1", "preference[0]", "must be int, got str"),
    ("feedback/missing-info/0/passage_id", 3, "feedback.missing-info[0].passage_id",
     "3 out of range 1..2"),
    ("feedback/missing-info/0/passage_id", 0, "feedback.missing-info[0].passage_id",
     "out of range"),
    ("feedback/missing-info/1/sentence_id", [1, 2], "feedback.missing-info[1].sentence_id[1]",
     "2 out of range 0..1 for passage 2"),
    ("feedback/missing-info/0/sentence_id", [-1], "feedback.missing-info[0].sentence_id[0]",
     "out of range"),
]


@pytest.mark.parametrize("mutation, value, field, problem", MALFORMED_FEEDBACK)
def test_malformed_feedback_record_names_file_record_and_field(
    tmp_path, mutation, value, field, problem
):
    bad = _feedback_record()
    _set(bad, mutation, value)
    path = _write(tmp_path, [_feedback_record(), _feedback_record(), bad])
    with pytest.raises(schema.QAFeedbackFormatError) as info:
        schema.load_feedback(path)
    err = info.value
    assert (err.path, err.index, err.field) == (str(path), 2, field)
    assert problem in err.problem
    assert str(err).startswith(f"{path}: record 2: field '{field}': ")


@pytest.mark.parametrize(
    "mutation, value, field",
    [
        ("answer", _DELETE, "answer"),
        ("answer", ["a", 1], "answer[1]"),
        ("text", None, "text"),
        ("passages/0/content", _DELETE, "passages[0].content"),
        ("passages/0", "Paris", "passages[0]"),
    ],
)
def test_malformed_prompt_record(tmp_path, mutation, value, field):
    bad = _prompt_record()
    _set(bad, mutation, value)
    path = _write(tmp_path, [bad], "dev.json")
    with pytest.raises(schema.QAFeedbackFormatError) as info:
        schema.load_prompts(path)
    assert (info.value.index, info.value.field) == (0, field)


@pytest.mark.parametrize(
    "content, problem",
    [
        ("", "file is empty"),
        ("  \n", "file is empty"),
        ("[{\"question\": ", "not valid JSON"),
        ("not json at all", "not valid JSON"),
        (json.dumps({"question": "q"}), "top level must be a list of records, got dict"),
        ("null", "top level must be a list of records, got null"),
    ],
)
def test_malformed_file(tmp_path, content, problem):
    path = _write(tmp_path, content)
    with pytest.raises(schema.QAFeedbackFormatError) as info:
        schema.load_feedback(path)
    assert info.value.path == str(path) and info.value.index is None
    assert problem in str(info.value)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(schema.QAFeedbackFormatError, match="file not found"):
        files.load_feedback_split(tmp_path, "dev")
    with pytest.raises(ValueError, match="no feedback file for split 'test'"):
        files.feedback_path(tmp_path, "test")


def test_dev_split_counts(qa_feedback_dir):
    """Figures of REFERENCE.md / NOTES.md for the shared dev split."""
    prompts = files.load_prompts_split(qa_feedback_dir, "dev")
    records = files.load_feedback_split(qa_feedback_dir, "dev")
    assert len(prompts) == len(records) == 500
    types = [e.error_type for r in records for e in r.feedback.errors]
    assert len(types) == 1373
    assert {t: types.count(t) for t in schema.ERROR_TYPES} == {
        "Irrelevant": 909, "Redundant": 133, "Incoherent": 16,
        "Wrong-Grounding": 163, "Unverifiable": 152,
    }
    assert sum(len(r.feedback.missing_info) for r in records) == 842
    prefs = [p for r in records for p in r.preference]
    assert (len(prefs), prefs.count(1), prefs.count(2), prefs.count(0)) == (3000, 1577, 1039, 384)
    assert sum(not p.passages for p in prompts) == 2  # records 176 and 472 have no passage
    assert all(passage.title for p in prompts for passage in p.passages)


# --- download -------------------------------------------------------------------------------


def _release_dir(tmp_path: pathlib.Path) -> pathlib.Path:
    release = tmp_path / "release"
    release.mkdir()
    _write(release, [_feedback_record()], "dev_feedback.json")
    _write(release, [_prompt_record()], "dev.json")
    _write(release, [_prompt_record(), _prompt_record()], "test.json")
    return release


def test_download_from_file_url(tmp_path):
    release = _release_dir(tmp_path)
    target = tmp_path / "data"
    written = files.download(target, ["dev", "test"], base_url=release.as_uri())
    assert sorted(p.name for p in written) == ["dev.json", "dev_feedback.json", "test.json"]
    assert len(files.load_prompts_split(target, "test")) == 2
    assert files.load_feedback_split(target, "dev")[0].preference == (1, 1, 0, 2, 1, 0)
    assert sorted(p.name for p in target.iterdir()) == sorted(p.name for p in written)
    # Present files are kept unless overwrite=True.
    assert files.download(target, ["dev"], base_url=release.as_uri()) == []
    assert len(files.download(target, ["dev"], base_url=release.as_uri(), overwrite=True)) == 2


def test_download_network_failure_writes_nothing(tmp_path):
    release = _release_dir(tmp_path)
    target = tmp_path / "data"
    # train.json is missing from the "release": the file:// fetch fails like a 404 would.
    with pytest.raises(files.DownloadError, match=r"could not download .*train\.json"):
        files.download(target, ["dev", "train"], base_url=release.as_uri())
    assert not target.exists() or list(target.iterdir()) == []

    def offline(url: str) -> bytes:
        raise files.DownloadError(f"could not download {url}: network is unreachable")

    with pytest.raises(files.DownloadError, match="network is unreachable"):
        files.download(target, ["dev"], fetch=offline)


def test_download_refuses_invalid_payload(tmp_path):
    served = {"dev.json": b"[]", "dev_feedback.json": b"<html>rate limited</html>"}
    fetch = lambda url: served[url.rsplit("/", 1)[1]]
    target = tmp_path / "data"
    with pytest.raises(schema.QAFeedbackFormatError, match="dev_feedback.json: not valid JSON"):
        files.download(target, ["dev"], base_url="https://example.invalid/data", fetch=fetch)
    assert not target.exists()
    bad = _feedback_record()
    bad["preference"] = [1]
    served["dev_feedback.json"] = json.dumps([bad]).encode()
    with pytest.raises(schema.QAFeedbackFormatError, match="record 0: field 'preference'"):
        files.download(target, ["dev"], base_url="https://example.invalid/data", fetch=fetch)


# --- TFDS -----------------------------------------------------------------------------------


def test_tfds_round_trip_dev(qa_feedback_dir, tmp_path):
    from fgjax.data import tfds_qa_feedback as tq

    builder = tq.build_qa_feedback_tfds(qa_feedback_dir, tmp_path / "tfds", "feedback")
    source = builder.as_data_source()
    assert list(source) == ["dev"] and len(source["dev"]) == 500
    assert tq.read_records(source["dev"], "feedback") == files.load_feedback_split(
        qa_feedback_dir, "dev"
    )
    builder = tq.build_qa_feedback_tfds(qa_feedback_dir, tmp_path / "tfds", "prompts")
    assert tq.read_records(builder.as_data_source()["dev"], "prompts") == (
        files.load_prompts_split(qa_feedback_dir, "dev")
    )


def test_tfds_data_source_by_name_and_hand_written_record(tmp_path):
    import tensorflow_datasets as tfds

    from fgjax.data import tfds_qa_feedback as tq

    source_dir = tmp_path / "src"
    source_dir.mkdir()
    records = [_feedback_record(), copy.deepcopy(_feedback_record())]
    records[1]["feedback"]["errors"] = []
    records[1]["feedback"]["missing-info"] = []
    _write(source_dir, records, "train_feedback.json")
    tq.build_qa_feedback_tfds(source_dir, tmp_path / "tfds", "feedback")
    source = tfds.data_source("qa_feedback/feedback", data_dir=tmp_path / "tfds", split="train")
    assert tq.read_records(source, "feedback") == schema.parse_feedback(records, "x")


def test_tfds_builder_rejects_malformed_source(tmp_path):
    from fgjax.data import tfds_qa_feedback as tq

    source_dir = tmp_path / "src"
    source_dir.mkdir()
    bad = _feedback_record()
    del bad["gold"]
    _write(source_dir, [bad], "dev_feedback.json")
    with pytest.raises(schema.QAFeedbackFormatError, match="record 0: field 'gold': missing"):
        tq.build_qa_feedback_tfds(source_dir, tmp_path / "tfds", "feedback")
    with pytest.raises(FileNotFoundError, match="no QA-Feedback prompts file"):
        tq.build_qa_feedback_tfds(source_dir, tmp_path / "tfds", "prompts")
