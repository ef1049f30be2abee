"""Sentence and sub-sentence ends of sampled responses, computed on device from token ids.

Host side, once per tokenizer: every vocabulary id is decoded to the bytes it stands for
(``token_bytes``: byte-level BPE via the GPT-2 byte alphabet, ``Ġ`` = space; sentencepiece
``▁`` = space and ``<0xNN>`` byte-fallback pieces; special tokens = no text) and described by a
few booleans (``SegmentTables``, ``[V]`` each).

Device side (``segment_end_masks``): the tables are gathered at the response ids and the
segment rule of ``fgjax.text`` with ``splitter="rules"`` is evaluated with cumulative
max/min/sum scans over the time axis, no loop over tokens:

* words are whitespace-delimited; a word may run over several tokens (``"U"`` ``"."`` ``"S"``),
  so whether a token starts or ends a word depends on its neighbours' whitespace (special
  tokens, empty, are skipped over);
* a sentence ends at a word whose last character is ``.`` ``!`` ``?`` or which is followed by a
  newline before the next word (wherever that newline sits: in the word's token, in
  whitespace tokens, or at the front of the next word's token);
* sub-sentences: ``fgjax.text.split_subsentences`` (the release's 5-word rule) inside each
  sentence, in its closed form: a cut after word ``j - 1`` (ending in ``,;!?``) of a sentence
  of ``n`` words needs ``j >= 5``, ``n - j >= 6``, and the next such candidate (if any) at
  least 5 words further on;
* the final segment ends at the last response token, at both levels (so an eos closes it);
  every other segment ends at the token holding its last character.

A piece with whitespace *between* two non-space characters (``"a b"``, ``".\\nThe"``) would
hold two words; tokenizers that pre-split on whitespace (GPT-2-style byte-level BPE,
sentencepiece) have none, and ``build_segment_tables`` rejects vocabularies that do.
A newline at a piece's start or end counts where it stands (before or after its text).

The host reference (``host_segment_end_mask``) splits the decoded text with ``fgjax.text`` and
maps segment ends to tokens (a character belongs to the token holding its last UTF-8 byte); it
equals the device masks for every response whose multi-byte characters (if split over tokens)
are not whitespace; tests check this on the QA-Feedback dev predictions.
"""

from __future__ import annotations

import codecs
import dataclasses
import json
import re
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from fgjax import text as text_lib

LEVELS = ("sentence", "subsentence")
_BYTE_FALLBACK = re.compile(r"<0x([0-9A-Fa-f]{2})>")


def _gpt2_byte_alphabet() -> dict[str, int]:
    """The byte-level BPE alphabet: printable Latin-1 bytes stand for themselves, the other
    bytes for code points 256, 257, ... in byte order (so ``Ġ`` is the space byte)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    others = [b for b in range(256) if b not in printable]
    chars = {chr(b): b for b in printable}
    chars.update({chr(256 + i): b for i, b in enumerate(others)})
    return chars


def _decoder_kinds(tokenizer) -> set[str]:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise TypeError(
            f"{type(tokenizer).__name__} has no `tokenizers` backend; segment tables need a fast "
            "(tokenizers-backed) transformers tokenizer"
        )
    kinds, stack = set(), [json.loads(backend.to_str()).get("decoder")]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            kinds.add(node.get("type"))
            if node.get("type") == "Replace" and node.get("pattern", {}).get("String") == "▁":
                kinds.add("Metaspace")
            stack.extend(node.get("decoders", []))
    return kinds


def token_bytes(tokenizer, vocab_size: int | None = None) -> list[bytes]:
    """The bytes each id ``[0, V)`` stands for in decoded text (special tokens: ``b""``).

    ``V`` is ``vocab_size`` (e.g. a model's padded embedding size) or ``len(tokenizer)``; ids
    past the tokenizer's vocabulary get ``b""``. Supports byte-level (GPT-2, Llama 3, Qwen) and
    sentencepiece-style (``▁``, optional ``<0xNN>`` byte fallback) decoders."""
    n = len(tokenizer)
    vocab_size = n if vocab_size is None else vocab_size
    if vocab_size < n:
        raise ValueError(f"vocab_size {vocab_size} is smaller than the tokenizer's {n} ids")
    kinds = _decoder_kinds(tokenizer)
    if "ByteLevel" in kinds:
        alphabet = _gpt2_byte_alphabet()
        piece_bytes = lambda tok: bytes(alphabet[c] for c in tok)
    elif "Metaspace" in kinds:
        fallback = "ByteFallback" in kinds

        def piece_bytes(tok):
            byte = _BYTE_FALLBACK.fullmatch(tok) if fallback else None
            return bytes([int(byte.group(1), 16)]) if byte else tok.replace("▁", " ").encode()

    else:
        raise ValueError(
            f"unsupported decoder {sorted(k for k in kinds if k)} of {type(tokenizer).__name__}: "
            "segment tables know byte-level BPE and sentencepiece (Metaspace) tokenizers"
        )
    special = set(tokenizer.all_special_ids)
    added = {i: t for i, t in tokenizer.added_tokens_decoder.items() if i < n}
    special |= {i for i, t in added.items() if t.special}
    tokens = tokenizer.convert_ids_to_tokens(list(range(n)))
    out = []
    for i, tok in enumerate(tokens):
        if i in special:
            out.append(b"")
        elif i in added:  # added tokens are stored as plain text, not in the byte alphabet
            out.append(added[i].content.encode())
        else:
            out.append(piece_bytes(tok))
    return out + [b""] * (vocab_size - n)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class SegmentTables:
    """Per-vocabulary booleans ``[V]`` (NumPy on the host, ``jnp`` after ``as_jax``).

    A piece is ``[leading whitespace][text][trailing whitespace]``, each part possibly empty.
    ``starts_word`` of the task description is ``has_text & space_first`` (a word starts here
    whatever precedes); a piece without leading space starts a word only after whitespace,
    which the device decides from the neighbours.
    """

    nonempty: np.ndarray  # the piece has any character (special tokens have none)
    has_text: np.ndarray  # the piece has a non-whitespace character
    space_first: np.ndarray  # first character is whitespace
    space_last: np.ndarray  # last character is whitespace
    newline_before_text: np.ndarray  # "\n" before the first non-space (anywhere, if no text)
    newline_after_text: np.ndarray  # "\n" after the last non-space character
    ends_sentence_punct: np.ndarray  # last non-space character is . ! ?
    ends_subsentence_punct: np.ndarray  # last non-space character is , ; ! ?

    def as_jax(self) -> SegmentTables:
        return jax.tree.map(jnp.asarray, self)


def piece_text(piece: bytes) -> str:
    """A piece's text on its own; bytes of a character split over tokens become U+FFFD
    (neither whitespace nor punctuation, as the whole character would be unless it is a
    non-ASCII space)."""
    return piece.decode("utf-8", errors="replace")


def tables_from_pieces(pieces: Sequence[bytes]) -> SegmentTables:
    """``SegmentTables`` from the bytes of every id (see ``token_bytes``)."""
    columns = {f.name: np.zeros(len(pieces), bool) for f in dataclasses.fields(SegmentTables)}
    for i, piece in enumerate(pieces):
        s = piece_text(piece)
        body = s.strip()
        if any(c.isspace() for c in body):
            raise ValueError(
                f"token id {i} ({s!r}) has whitespace between non-space characters; segment "
                "tables need pieces that hold at most one word"
            )
        row = {
            "nonempty": bool(s),
            "has_text": bool(body),
            "space_first": bool(s) and s[0].isspace(),
            "space_last": bool(s) and s[-1].isspace(),
            "newline_before_text": "\n" in s[: len(s) - len(s.lstrip())],
            "newline_after_text": bool(body) and "\n" in s[len(s.rstrip()) :],
            "ends_sentence_punct": bool(body) and body[-1] in text_lib.SENTENCE_END_CHARS,
            "ends_subsentence_punct": bool(body) and body[-1] in text_lib.SUBSENTENCE_END_CHARS,
        }
        for name, value in row.items():
            columns[name][i] = value
    return SegmentTables(**columns)


def build_segment_tables(tokenizer, vocab_size: int | None = None) -> SegmentTables:
    """Tables for a transformers tokenizer (built once, on the host)."""
    return tables_from_pieces(token_bytes(tokenizer, vocab_size))


# ----------------------------------------------------------------------------- device


def _gather(values: jax.Array, index: jax.Array) -> jax.Array:
    return jnp.take_along_axis(values, index, axis=1)


def _last_before(flag: jax.Array, pos: jax.Array, inclusive: bool) -> jax.Array:
    """Per position, the latest index ``s`` (``s <= t`` or ``s < t``) with ``flag``; -1 if none."""
    last = lax.cummax(jnp.where(flag, pos, -1), axis=1)
    return last if inclusive else jnp.pad(last[:, :-1], ((0, 0), (1, 0)), constant_values=-1)


def _first_after(flag: jax.Array, pos: jax.Array, inclusive: bool) -> jax.Array:
    """Per position, the earliest index ``s`` (``s >= t`` or ``s > t``) with ``flag``; T if none."""
    size = flag.shape[1]
    first = lax.cummin(jnp.where(flag, pos, size), axis=1, reverse=True)
    return first if inclusive else jnp.pad(first[:, 1:], ((0, 0), (0, 1)), constant_values=size)


def segment_end_masks(
    response_ids: jax.Array, response_mask: jax.Array, tables: SegmentTables
) -> dict[str, jax.Array]:
    """``{"sentence_end", "subsentence_end"}``: bool ``[B, T]`` masks of segment-end tokens.

    ``response_ids`` ``[B, T]`` int ids ``< V``; ``response_mask`` ``[B, T]`` (nonzero = token of
    the response, e.g. up to and including eos); ``tables`` of ``[V]`` arrays. Masked positions
    are treated as absent. The last response token of each row always ends a segment at both
    levels; a row without response tokens has no segment ends. Jit-able; shapes are static.
    """
    mask = response_mask > 0
    t = {
        f.name: jnp.asarray(getattr(tables, f.name))[response_ids] & mask
        for f in dataclasses.fields(SegmentTables)
    }
    size = response_ids.shape[1]
    pos = jnp.broadcast_to(jnp.arange(size), response_ids.shape)

    def at(values, index, default):  # values[index], default where index is out of range
        inside = (index >= 0) & (index < size)
        return jnp.where(inside, _gather(values, jnp.clip(index, 0, size - 1)), default)

    # Words: a text piece starts a word after whitespace, ends one before whitespace.
    prev_piece = _last_before(t["nonempty"], pos, inclusive=False)
    next_piece = _first_after(t["nonempty"], pos, inclusive=False)
    word_start = t["has_text"] & (t["space_first"] | at(t["space_last"], prev_piece, True))
    word_end = t["has_text"] & (t["space_last"] | at(t["space_first"], next_piece, True))
    words_so_far = jnp.cumsum(word_start, axis=1)  # words started at or before t
    total_words = words_so_far[:, -1:]

    # A newline between a word's end and the next word's text closes its sentence.
    newlines = jnp.cumsum(t["newline_before_text"], axis=1)
    next_text = _first_after(t["has_text"], pos, inclusive=False)
    newline_gap = at(newlines, next_text, newlines[:, -1:]) > newlines
    sentence_break = word_end & (
        t["ends_sentence_punct"] | t["newline_after_text"] | newline_gap
    )
    sentence_close = sentence_break | (word_end & (words_so_far == total_words))

    # Sub-sentences: the 5-word rule in closed form (see text.split_subsentences).
    min_words = text_lib.MIN_SUBSENTENCE_WORDS
    words_before_sentence = at(words_so_far, _last_before(sentence_close, pos, False), 0)
    close = _first_after(sentence_close, pos, inclusive=True)
    words_to_close = at(words_so_far, close, total_words) - words_so_far
    # (a sentence's last word has no words to its close, so it is never a candidate)
    candidate = word_end & t["ends_subsentence_punct"] & (words_to_close > min_words)
    next_candidate = _first_after(candidate, pos, inclusive=False)
    gap_to_next = at(words_so_far, next_candidate, 0) - words_so_far
    next_in_sentence = next_candidate < close
    cut = (
        candidate
        & (words_so_far - words_before_sentence >= min_words)
        & (~next_in_sentence | (gap_to_next >= min_words))
    )

    # Every segment but the last ends at its last word; the last ends at the last token.
    last_token = pos == jnp.max(jnp.where(mask, pos, -1), axis=1, keepdims=True)
    words_follow = words_so_far < total_words
    return {
        "sentence_end": (sentence_break & words_follow) | last_token,
        "subsentence_end": ((sentence_break | cut) & words_follow) | last_token,
    }


# ----------------------------------------------------------------------------- host reference


def decode_with_offsets(ids: Sequence[int], pieces: Sequence[bytes]) -> tuple[str, list]:
    """The text ``ids`` decode to (UTF-8, invalid bytes as U+FFFD) and each token's character
    span in it; a character belongs to the token holding its last byte."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    chunks, offsets, length = [], [], 0
    for i, token in enumerate(ids):
        chunk = decoder.decode(pieces[token], final=i == len(ids) - 1)
        chunks.append(chunk)
        offsets.append((length, length + len(chunk)))
        length += len(chunk)
    return "".join(chunks), offsets


def host_segment_end_mask(
    ids: Sequence[int], pieces: Sequence[bytes], level: str, splitter="rules"
) -> np.ndarray:
    """Bool ``[len(ids)]``: segment ends of the decoded response by ``fgjax.text``, mapped to
    tokens, the final segment closed by the last token (plain Python; tests, data building).
    ``segment_end_masks`` computes exactly this for ``splitter="rules"``; other splitters give
    the host-only segmentation (e.g. to compare with what the device does)."""
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
    out = np.zeros(len(ids), bool)
    if len(ids):
        decoded, offsets = decode_with_offsets(ids, pieces)
        spans = text_lib.segment_spans(decoded, level, splitter)
        out[text_lib.segment_end_token_indices(offsets, spans)] = True
    return out
