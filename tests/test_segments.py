"""Segment ends on device vs. the host reference: hand-made vocabularies, random token
sequences, and all QA-Feedback dev predictions under trained byte-level BPE and sentencepiece
tokenizers."""

import json
import random

import jax
import numpy as np
import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from fgjax import segments, text
from fgjax.tokenizers import train_tokenizer

EOS = "<eos>"  # stands for any special token: no text


class ToyVocab:
    """A vocabulary made of the given pieces; id 0 is a special token (``EOS``, no text)."""

    def __init__(self, pieces):
        self.pieces = [b""] + sorted({p.encode() for p in pieces if p != EOS})
        self.ids = {p.decode(): i for i, p in enumerate(self.pieces)}
        self.ids[EOS] = 0
        self.tables = segments.tables_from_pieces(self.pieces)

    def batch(self, rows, length, batch_size=None):
        ids = np.zeros((batch_size or len(rows), length), np.int32)
        mask = np.zeros_like(ids)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = [self.ids[p] for p in row]
            mask[i, : len(row)] = 1
        return ids, mask


RANDOM_PIECES = [" w", "w", " x", "x", ",", ";", ".", "!", "?", " ,", " .", "\n", " ", "  ",
                 "\n\n", " \n", ".\n", ",\n", "\nw", " w\n", "é", " é"]
HAND_PIECES = ["A", " b", "c", ".", " B", " C", " D", " d", " e", "C", "\n", "\n\n", " ",
               " b\n", "\nC", ".\n", "The", " U", "S", " is", " big", "It", " 3", "5", " m",
               " long"]
# One vocabulary and one shape for all hand-written and random cases: one compilation.
VOCAB = ToyVocab(RANDOM_PIECES + HAND_PIECES + [f"{w}{i}" for w in "wxyabc" for i in range(8)]
                 + [f" {w}{i}" for w in "wxyabc" for i in range(8)] + list("abcdefghijklm")
                 + [f" {c}" for c in "abcdefghijklm"] + [",", ";", "!", "?"])
LENGTH, ROWS = 48, 8
_masks = jax.jit(segments.segment_end_masks)


def ends(rows, level="sentence_end"):
    """Device segment-end indices per row, each row checked against the host reference."""
    ids, mask = VOCAB.batch(rows, LENGTH, max(ROWS, len(rows)))
    out = jax.device_get(_masks(ids, mask, VOCAB.tables))
    result = []
    for i, row in enumerate(rows):
        got = out[level][i]
        assert not got[len(row) :].any(), "segment end on a padded position"
        host = segments.host_segment_end_mask(ids[i, : len(row)], VOCAB.pieces, level[:-4])
        np.testing.assert_array_equal(got[: len(row)], host, err_msg=repr(row))
        result.append(np.nonzero(got)[0].tolist())
    return result


def word_tokens(text):
    """One token per word, with its leading space, punctuation split off as its own token."""
    out = []
    for i, word in enumerate(text.split()):
        core, punct = (word[:-1], word[-1]) if word[-1] in ",;!?." else (word, "")
        out.append((" " if i else "") + core)
        out += [punct] if punct else []
    return out


# ---------------------------------------------------------------- hand-written cases


def test_words_run_over_tokens():
    # "U.S." is one word over four tokens: only its last "." can end a sentence
    row = ["The", " U", ".", "S", ".", " is", " big", "."]
    assert ends([row]) == [[4, 7]]
    # "3.5" - the "." token is not at a word end
    assert ends([["It", " is", " 3", ".", "5", " m", " long"]]) == [[6]]


def test_newlines_end_sentences_wherever_they_stand():
    assert ends([["A", " b", "\n", "C", " d"]]) == [[1, 4]]  # newline token
    assert ends([["A", " b", "\n\n", " ", "C", " d"]]) == [[1, 5]]  # whitespace run
    assert ends([["A", " b\n", "C", " d"]]) == [[1, 3]]  # trailing newline in the word's token
    assert ends([["A", " b", "\nC", " d"]]) == [[1, 3]]  # leading newline in the next token
    assert ends([["A", ".\n", "C", " d"]]) == [[1, 3]]  # punctuation and newline together
    assert ends([["\n", "A", " b", "\n"]]) == [[3]]  # newlines around a single sentence
    assert ends([["A", " b", " ", "C"]]) == [[3]]  # a space is not a newline


def test_last_response_token_closes_the_final_segment():
    rows = [
        ["A", ".", " B", ".", EOS],  # final "." moves to eos: no empty segment at eos
        ["A", ".", " B", EOS],  # unpunctuated final sentence closed by eos
        ["A", ".", " B"],  # no eos (max length reached): closed by its last token
        [EOS],  # empty response: one empty segment at eos
        ["A", ".", " ", " "],  # trailing whitespace tokens belong to the final segment
    ]
    expected = [[1, 4], [1, 3], [1, 2], [0], [3]]
    assert ends(rows) == expected
    assert ends(rows, "subsentence_end") == expected


def test_masked_and_special_tokens_are_skipped():
    ids, mask = VOCAB.batch([["A", " b", ".", " C", " d", EOS], []], LENGTH, ROWS)
    ids[:, 6:] = VOCAB.ids["."]  # garbage under the mask must not matter
    out = jax.device_get(_masks(ids, mask, VOCAB.tables))
    assert np.nonzero(out["sentence_end"][0])[0].tolist() == [2, 5]
    assert not out["sentence_end"][1:].any() and not out["subsentence_end"][1:].any()
    # a special token inside a word does not split it ("b" EOS "c." is one word "bc.")
    assert ends([["A", " b", EOS, "c", ".", " D", " e"]]) == [[4, 6]]


def test_five_word_rule_on_device():
    cases = {
        # 5 words before the comma, 6 after: cut
        "w0 w1 w2 w3 w4, x0 x1 x2 x3 x4 x5.": ["w4,"],
        # only 5 after: no cut
        "w0 w1 w2 w3 w4, x0 x1 x2 x3 x4.": [],
        # short first piece grows to the next comma
        "a b, c d e f g, h i j k l m": ["g,"],
        # short middle piece merges into the previous one
        "w0 w1 w2 w3 w4, x0 x1 x2; y0 y1 y2 y3 y4 y5": ["x2;"],
        # the next candidate exactly 5 words on: both cut
        "w0 w1 w2 w3 w4, x0 x1 x2 x3 x4, y0 y1 y2 y3 y4 y5": ["w4,", "x4,"],
        # a short trailing piece is never cut off
        "w0 w1 w2 w3 w4 w5, x0 x1 x2 x3 x4, y0 y1": ["w5,"],
        # "!" and "?" end sentences, and so sub-sentences, without the 5-word rule
        "a b! c d? e f": ["b!", "d?"],
    }
    rows = [word_tokens(s) for s in cases]
    for row, cuts, sub, sent in zip(
        rows, cases.values(), ends(rows, "subsentence_end"), ends(rows, "sentence_end")
    ):
        # cut indices point at the punctuation token after the word
        words_at = ["".join(row[: i + 1]).split()[-1] for i in sub[:-1]]
        assert words_at == cuts, row
        assert set(sent) <= set(sub)  # a sentence end is a sub-sentence end
        assert sub[-1] == len(row) - 1


def test_subsentence_rule_restarts_in_each_sentence():
    # the counts restart at the sentence end: "a0..a3," has only 4 words in sentence two
    s = "w0 w1 w2 w3 w4 w5 w6 w7. a0 a1 a2 a3, b0 b1 b2 b3 b4 b5, c0 c1 c2 c3 c4 c5"
    row = word_tokens(s)
    sub = ends([row], "subsentence_end")[0]
    words_at = ["".join(row[: i + 1]).split()[-1] for i in sub]
    assert words_at == ["w7.", "b5,", "c5"]


@pytest.mark.parametrize("long_sentences", [False, True])
def test_random_token_sequences_match_the_host_reference(long_sentences):
    pieces = RANDOM_PIECES + [EOS]
    weights = [6, 3, 6, 3] + [1] * (len(pieces) - 4)
    if long_sentences:  # few sentence ends, many commas: exercises the 5-word rule
        weights = [30, 3, 30, 3, 6, 3, 1, 1, 1, 3] + [0.2] * (len(pieces) - 10)
    rng = random.Random(int(long_sentences))
    rows = [rng.choices(pieces, weights, k=rng.randint(0, LENGTH)) for _ in range(600)]
    subsentence = ends(rows, "subsentence_end")  # each row checked against the host reference
    sentence = ends(rows, "sentence_end")
    cuts = sum(map(len, subsentence)) - sum(map(len, sentence))
    print(f"\n{sum(map(len, sentence))} sentence ends, {cuts} sub-sentence cuts")
    assert sum(map(len, sentence)) > 1000  # the rows do have many segments
    if long_sentences:
        assert cuts > 200


def test_jit_traces_once_for_a_fixed_shape():
    traces = []

    def counted(ids, mask, tables):
        traces.append(1)
        return segments.segment_end_masks(ids, mask, tables)

    fn = jax.jit(counted)
    for length in (3, 1, 0):
        ids, mask = VOCAB.batch([[" a", ".", " a"][:length]], LENGTH, ROWS)
        fn(ids, mask, VOCAB.tables.as_jax())
    assert len(traces) == 1


def test_tables_reject_pieces_holding_two_words():
    with pytest.raises(ValueError, match=r"token id 1 \('a b'\)"):
        segments.tables_from_pieces([b"ok", b"a b"])
    with pytest.raises(ValueError, match="token id 0"):
        segments.tables_from_pieces([b".\nThe"])


def test_unsupported_decoder_is_named():
    wordpiece = Tokenizer(models.WordPiece({"[UNK]": 0, "a": 1, "##b": 2}, unk_token="[UNK]"))
    wordpiece.pre_tokenizer = pre_tokenizers.Whitespace()
    wordpiece.decoder = decoders.WordPiece()
    tok = PreTrainedTokenizerFast(tokenizer_object=wordpiece, unk_token="[UNK]")
    with pytest.raises(ValueError, match=r"unsupported decoder \['WordPiece'\]"):
        segments.token_bytes(tok)


# ---------------------------------------------------------------- QA-Feedback dev predictions


@pytest.fixture(scope="module")
def dev_predictions(qa_feedback_dir):
    records = json.loads((qa_feedback_dir / "dev_feedback.json").read_text())
    docs = [r[f"prediction {i}"] for r in records for i in range(1, 5)]
    assert len(docs) == 2000
    return docs


@pytest.fixture(scope="module")
def trained(dev_predictions, tmp_path_factory):
    root = tmp_path_factory.mktemp("tokenizers")
    return {
        "bpe": train_tokenizer(dev_predictions, "bpe", 4096, str(root / "bpe")),
        "sentencepiece": train_tokenizer(dev_predictions, "sentencepiece", 4000, str(root / "sp")),
    }


def test_token_bytes_decode_like_the_tokenizer(trained):
    bpe, sp = trained["bpe"], trained["sentencepiece"]
    pieces = segments.token_bytes(bpe)
    assert pieces[bpe.eos_token_id] == b""
    for i in range(len(bpe)):
        if i != bpe.eos_token_id and pieces[i].isascii():
            assert pieces[i].decode() == bpe.decode([i]), i
    pieces = segments.token_bytes(sp, vocab_size=len(sp) + 28)  # padded model vocabulary
    assert len(pieces) == len(sp) + 28 and pieces[-1] == b""
    assert pieces[sp.eos_token_id] == pieces[sp.pad_token_id] == pieces[sp.unk_token_id] == b""
    for i in range(3, len(sp)):
        token = sp.convert_ids_to_tokens(i)
        assert pieces[i].decode() == token.replace("▁", " "), i


def perturbed(docs, rng):
    """Docs with some spaces turned into newlines, runs of spaces and mixed whitespace."""
    swaps = [" ", " ", " ", " ", " ", " ", "\n", "  ", " \n", "\n\n", " \n\n "]
    return ["".join(rng.choice(swaps) if c == " " else c for c in d) for d in docs]


@pytest.mark.parametrize("kind", ["bpe", "sentencepiece", "bpe_newlines"])
def test_dev_predictions_device_equals_host(kind, trained, dev_predictions):
    tokenizer = trained[kind.removesuffix("_newlines")]
    docs = dev_predictions
    if kind == "bpe_newlines":  # the sentencepiece tokenizer normalises newlines away
        docs = perturbed(docs[:500], random.Random(1))
    pieces = segments.token_bytes(tokenizer)
    tables = segments.build_segment_tables(tokenizer).as_jax()
    ids = [tokenizer(d)["input_ids"] for d in docs]
    length = max(len(x) for x in ids)
    batch = np.zeros((len(ids), length), np.int32)
    mask = np.zeros((len(ids), length), np.int32)
    for i, x in enumerate(ids):
        batch[i, : len(x)], mask[i, : len(x)] = x, 1
    out = jax.device_get(_masks(batch, mask, tables))
    counts = {"sentence": 0, "subsentence": 0}
    for i, x in enumerate(ids):
        # the host works on the text the tokenizer decodes to
        text, _ = segments.decode_with_offsets(x, pieces)
        decoded = tokenizer.decode(x, skip_special_tokens=True, clean_up_tokenization_spaces=False)
        assert text.removeprefix(" ") == decoded.removeprefix(" "), i  # ▁ of the first piece
        for level in counts:
            host = segments.host_segment_end_mask(x, pieces, level)
            device = out[f"{level}_end"][i]
            np.testing.assert_array_equal(device[: len(x)], host, err_msg=f"{kind} doc {i}")
            assert not device[len(x) :].any()
            counts[level] += int(host.sum())
    # sub-sentences are strictly finer on this data, and sentences are many
    assert counts["subsentence"] > counts["sentence"] > 2 * len(docs)


@pytest.mark.parametrize("kind", ["bpe", "sentencepiece"])
def test_offset_mapping_route_agrees_on_dev_predictions(kind, trained, dev_predictions):
    """Data builders place labels from the original text and the tokenizer's offsets; that
    route gives the same segment-end tokens as the decoded-text route the device matches."""
    tokenizer = trained[kind]
    pieces = segments.token_bytes(tokenizer)
    for doc in dev_predictions[:300]:
        enc = tokenizer(doc, return_offsets_mapping=True)
        for level in ("sentence", "subsentence"):
            spans = text.segment_spans(doc, level, "rules")
            got = text.segment_end_token_indices(enc["offset_mapping"], spans)
            host = segments.host_segment_end_mask(enc["input_ids"], pieces, level)
            assert got == np.nonzero(host)[0].tolist(), doc
