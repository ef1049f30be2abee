"""Training, saving and loading tokenizers (local files only)."""

import os

import pytest
import transformers

from fgjax import tokenizers

TEXTS = [
    f"Question {i}: who wrote the song, and when was it released? "
    f"It was written by Ann Lee in {1950 + i}; the band recorded it twice!"
    for i in range(200)
]
SAMPLE = "It was recorded by the band in 1961; who wrote it?"


@pytest.fixture(scope="module")
def bpe(tmp_path_factory):
    return tokenizers.train_tokenizer(
        TEXTS, "bpe", 300, str(tmp_path_factory.mktemp("t") / "bpe"), special_tokens=["<sep>"]
    )


def test_bpe_round_trip_and_special_ids(bpe):
    assert isinstance(bpe, transformers.GPT2Tokenizer)
    assert 256 < len(bpe) <= 300
    ids = bpe(SAMPLE)["input_ids"]
    assert len(ids) < len(SAMPLE.encode())  # merges were learned
    assert bpe.decode(ids) == SAMPLE
    # Byte-level: text never seen in training still round-trips, no unknown tokens.
    assert bpe.decode(bpe("naïve ✓ 漢字")["input_ids"]) == "naïve ✓ 漢字"
    assert bpe.eos_token == "<|endoftext|>" and bpe.eos_token_id == 0
    assert bpe.pad_token_id == bpe.eos_token_id  # GPT-2 convention: pad = eos
    sep = bpe.convert_tokens_to_ids("<sep>")
    assert bpe("a<sep>b")["input_ids"].count(sep) == 1


def test_bpe_with_dedicated_pad_reloads(tmp_path):
    path = str(tmp_path / "bpe_pad")
    tok = tokenizers.train_tokenizer(TEXTS, "bpe", 300, path, pad_token="<pad>")
    assert (tok.eos_token_id, tok.pad_token_id) == (0, 1)
    again = tokenizers.load_tokenizer(path)
    assert again(SAMPLE)["input_ids"] == tok(SAMPLE)["input_ids"]
    assert (again.eos_token_id, again.pad_token_id) == (0, 1)
    batch = again([SAMPLE, "Who?"], padding=True)["input_ids"]
    assert batch[1][-1] == 1


def test_sentencepiece_loads_as_t5_tokenizer(tmp_path):
    path = str(tmp_path / "spm")
    tok = tokenizers.train_tokenizer(TEXTS, "sentencepiece", 120, path, special_tokens=["<sep>"])
    assert os.path.isfile(os.path.join(path, "spiece.model"))
    again = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
    for t in (tok, again):
        assert isinstance(t, transformers.T5Tokenizer)
        assert (t.pad_token, t.eos_token, t.unk_token) == ("<pad>", "</s>", "<unk>")
        assert (t.pad_token_id, t.eos_token_id, t.unk_token_id) == (0, 1, 2)
        assert len(t) <= 120
    ids = again(SAMPLE)["input_ids"]
    assert ids[-1] == 1  # T5 appends </s>
    assert again.unk_token_id not in ids
    assert again.decode(ids, skip_special_tokens=True) == SAMPLE
    assert tok(SAMPLE)["input_ids"] == ids
    sep = again.convert_tokens_to_ids("<sep>")
    assert sep == 3 and again("it<sep>was")["input_ids"].count(sep) == 1


def test_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="kind"):
        tokenizers.train_tokenizer(TEXTS, "wordpiece", 100, str(tmp_path / "x"))
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "f").write_text("x")
    with pytest.raises(FileExistsError, match="full"):
        tokenizers.train_tokenizer(TEXTS, "bpe", 300, str(tmp_path / "full"))
    with pytest.raises(FileNotFoundError, match="nowhere"):
        tokenizers.load_tokenizer(str(tmp_path / "nowhere"))
    assert sorted(os.listdir(tmp_path)) == ["full"]  # nothing half-written left behind
