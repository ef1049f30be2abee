"""Host-side text splitting into words, sentences and sub-sentences (character spans).

Every span is a half-open character range ``(start, end)`` into the text, trimmed: it starts at
a non-whitespace character and ends right after one. Whitespace is what ``str.isspace`` says
(the same as ``str.split()``), so *words* are exactly the items of ``text.split()``.

Sentence splitters are pluggable (``SENTENCE_SPLITTERS``, ``register_sentence_splitter``):

* ``"syntok"`` (default): the ``syntok`` segmenter, pure Python. On QA-Feedback dev predictions
  it agrees with spaCy's ``en_core_web_sm`` on ~97% of documents (see ``shared/NOTES.md``).
* ``"spacy"``: spaCy with ``en_core_web_sm``, what the reference release uses. Needs spaCy and
  the official English model installed by the user (see ``SPACY_INSTALL_HINT``).
* ``"rules"``: the rule the device applies to token ids (``fgjax.segments``): a sentence ends
  after a word whose last character is ``.``, ``!`` or ``?``, and at a newline (``"\\n"``).

A splitter is any ``Callable[[str], Sequence[tuple[int, int]]]``. Only where its sentences
*start* matters: ``split_sentences`` turns the spans into contiguous sentences (the text from
one sentence start to the next belongs to the earlier sentence, as spaCy's ``Doc.sents`` are)
and trims them, so every word belongs to exactly one sentence whatever the splitter returns.

Sub-sentences follow the reference release exactly (``split_subsentences``).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence

Span = tuple[int, int]
SentenceSplitter = Callable[[str], Sequence[Span]]

MIN_SUBSENTENCE_WORDS = 5
SENTENCE_END_CHARS = frozenset(".!?")
SUBSENTENCE_END_CHARS = frozenset(",;!?")
SPACY_MODEL = "en_core_web_sm"
SPACY_INSTALL_HINT = (
    'pip install "fgjax[spacy]" && python -m spacy download en_core_web_sm '
    "(the official model from spaCy's own releases; do not use re-uploads from other sources)"
)

_WORD = re.compile(r"\S+")


def word_spans(text: str) -> list[Span]:
    """Whitespace-delimited words: the items of ``text.split()`` with their positions."""
    return [m.span() for m in _WORD.finditer(text)]


def _trim(text: str, start: int, end: int) -> Span | None:
    """``(start, end)`` shrunk to its non-whitespace content; None when there is none."""
    words = word_spans(text[start:end])
    if not words:
        return None
    return start + words[0][0], start + words[-1][1]


def _rules_sentences(text: str) -> list[Span]:
    words = word_spans(text)
    sentences, first = [], 0
    for i, (_, end) in enumerate(words):
        next_start = words[i + 1][0] if i + 1 < len(words) else len(text)
        if text[end - 1] in SENTENCE_END_CHARS or "\n" in text[end:next_start]:
            sentences.append((words[first][0], end))
            first = i + 1
    if first < len(words):
        sentences.append((words[first][0], words[-1][1]))
    return sentences


def _syntok_sentences(text: str) -> list[Span]:
    import syntok.segmenter

    spans = []
    for paragraph in syntok.segmenter.analyze(text):
        for sentence in paragraph:
            if sentence:
                last = sentence[-1]
                spans.append((sentence[0].offset, last.offset + len(last.value)))
    return spans


@functools.lru_cache(maxsize=1)
def _spacy_pipeline():
    try:
        import spacy
    except ImportError as e:
        raise ImportError(f"splitter 'spacy' needs spaCy: {SPACY_INSTALL_HINT}") from e
    try:
        return spacy.load(SPACY_MODEL)
    except OSError as e:
        raise OSError(
            f"splitter 'spacy' needs the spaCy model {SPACY_MODEL!r}: {SPACY_INSTALL_HINT}"
        ) from e


def _spacy_sentences(text: str) -> list[Span]:
    return [(s.start_char, s.end_char) for s in _spacy_pipeline()(text).sents]


SENTENCE_SPLITTERS: dict[str, SentenceSplitter] = {
    "syntok": _syntok_sentences,
    "spacy": _spacy_sentences,
    "rules": _rules_sentences,
}


def register_sentence_splitter(name: str, splitter: SentenceSplitter) -> None:
    """Make ``splitter`` (text -> sentence spans) available as ``split_sentences(..., name)``."""
    if name in SENTENCE_SPLITTERS:
        raise ValueError(f"sentence splitter {name!r} is already registered")
    if not callable(splitter):
        raise TypeError(f"sentence splitter {name!r} must be callable, got {type(splitter)}")
    SENTENCE_SPLITTERS[name] = splitter


def _resolve_splitter(splitter: str | SentenceSplitter) -> SentenceSplitter:
    if callable(splitter):
        return splitter
    if splitter not in SENTENCE_SPLITTERS:
        raise ValueError(
            f"unknown sentence splitter {splitter!r}; registered: {sorted(SENTENCE_SPLITTERS)}"
        )
    return SENTENCE_SPLITTERS[splitter]


def split_sentences(text: str, splitter: str | SentenceSplitter = "syntok") -> list[Span]:
    """Trimmed, contiguous sentence spans of ``text`` (empty list for blank text).

    ``splitter`` is a registered name or a callable. The splitter's span starts are the
    sentence starts; each sentence runs to the next start (or the end of the text), trimmed.
    """
    starts = sorted({start for start, _ in _resolve_splitter(splitter)(text)})
    if starts and not 0 <= starts[0] <= starts[-1] < max(len(text), 1):
        raise ValueError(f"sentence splitter returned a start outside [0, {len(text)}): {starts}")
    bounds = [0] + [s for s in starts if s > 0] + [len(text)]
    spans = (_trim(text, a, b) for a, b in zip(bounds[:-1], bounds[1:]))
    return [span for span in spans if span is not None]


def split_subsentences(text: str, sentence_span: Span) -> list[Span]:
    """Sub-sentence spans of one sentence, by the reference release's rule.

    The sentence's words are its whitespace-delimited words ``w[0] .. w[n-1]``. A cut before
    word ``j`` (``1 <= j < n``) is a *candidate* when ``w[j-1]`` ends with ``,`` ``;`` ``!`` or
    ``?`` and more than 5 words remain from ``w[j]`` on (``n - j >= 6``). Walking the
    candidates left to right, with ``p`` the start of the current piece (first 0):

    * ``p == 0`` and ``j < 5``: no cut (a short first piece grows instead of being merged);
    * ``j - p >= 5``: cut, ``p = j``;
    * ``p > 0`` and ``j - p < 5``: the short piece ``w[p:j]`` is merged into the piece before
      it (the cut at ``p`` is removed) and a cut is made at ``j``, ``p = j``.

    Equivalently: the cuts are the candidates ``j >= 5`` whose next candidate (if any) lies at
    least 5 words further on. So every piece but the first has at least 5 words, the last piece
    has at least 6 unless it is the whole sentence, and a piece may be shorter than 5 words only
    if it is the first one. Punctuation is only looked at as the *last character of a word*
    (``"a,b"`` is one word that does not end a piece); ``.`` never cuts a sub-sentence.
    """
    start, end = sentence_span
    words = [(start + a, start + b) for a, b in word_spans(text[start:end])]
    n = len(words)
    if n == 0:
        return []
    cuts, piece_start = [], 0
    for j in range(1, n):
        a, b = words[j - 1]
        if text[b - 1] not in SUBSENTENCE_END_CHARS or n - j <= MIN_SUBSENTENCE_WORDS:
            continue
        if j - piece_start >= MIN_SUBSENTENCE_WORDS:
            cuts.append(j)
        elif piece_start > 0:
            cuts[-1] = j  # merge the short piece into the one before it
        else:
            continue  # short first piece: keep growing it
        piece_start = j
    bounds = [0] + cuts + [n]
    return [(words[a][0], words[b - 1][1]) for a, b in zip(bounds[:-1], bounds[1:])]


def segment_spans(
    text: str, level: str = "subsentence", splitter: str | SentenceSplitter = "syntok"
) -> list[Span]:
    """Spans of the segments of ``text`` at ``level`` ``"sentence"`` or ``"subsentence"``."""
    sentences = split_sentences(text, splitter)
    if level == "sentence":
        return sentences
    if level == "subsentence":
        return [piece for sentence in sentences for piece in split_subsentences(text, sentence)]
    raise ValueError(f"level must be 'sentence' or 'subsentence', got {level!r}")


def char_ends_to_token_ends(offsets: Sequence[Span], char_ends: Sequence[int]) -> list[int]:
    """Token index holding character ``char_end - 1`` (a segment's last character), per end.

    ``offsets`` are the tokens' character spans ``[N]`` in text order (e.g. a fast tokenizer's
    ``offset_mapping``); empty spans (special tokens) never match. Where several tokens cover
    the character (a byte-level BPE splitting a multi-byte character), the last one holds it,
    as in ``fgjax.segments.decode_with_offsets``. ``char_ends`` must be increasing.
    """
    token_ends, token = [], 0
    for char_end in char_ends:
        last_char = char_end - 1
        while token < len(offsets) and offsets[token][1] <= last_char:
            token += 1
        if token == len(offsets) or not offsets[token][0] <= last_char < offsets[token][1]:
            raise ValueError(f"no token covers character {last_char} (segment end {char_end})")
        while token + 1 < len(offsets) and offsets[token + 1][0] <= last_char:
            token += 1
        token_ends.append(token)
    return token_ends


def segment_end_token_indices(
    offsets: Sequence[Span], spans: Sequence[Span], num_tokens: int | None = None
) -> list[int]:
    """Token indices where segments end: the token holding each segment's last character,
    except that the *final* segment ends at the last token (``num_tokens - 1``; by default the
    last of ``offsets``), so a trailing eos or whitespace token closes it. With no segments
    (blank text) the last token alone closes an empty segment. Spans must be in text order."""
    last_token = (len(offsets) if num_tokens is None else num_tokens) - 1
    if last_token < 0:
        raise ValueError("segment_end_token_indices needs at least one token")
    ends = char_ends_to_token_ends(offsets, [end for _, end in spans])
    if ends and ends[-1] > last_token:
        raise ValueError(f"segment ends at token {ends[-1]} beyond the last token {last_token}")
    return ends[:-1] + [last_token]
