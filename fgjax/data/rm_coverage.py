"""R3 (information completeness) labels: passage-sentence coverage of QA-Feedback answers.

Rules (shared/REFERENCE.md, resolved against the release's ``create_comp_rm_files.py``):

- Each sub-sentence of a text is matched to its most similar passage sentence. Similarity is
  difflib's ``quick_ratio`` (character multiset overlap ``2 * M / (len(a) + len(b))``) between
  the sub-sentence and the best window of ``n = w + int(0.05 * w)`` consecutive words of the
  passage sentence (``w`` = words of the sub-sentence); a passage sentence of at most ``n``
  words is padded with ``" #"`` words to ``n + 1`` words first, and a sub-sentence contained
  verbatim in the (padded) sentence scores 1.0. The first passage sentence with the highest
  score wins; a match counts only if its score is >= ``MIN_SIMILARITY``.
- The *information sentences* of a record are the passage sentences matched by the
  sub-sentences of ``corrected-prediction``, minus those flagged only
  ``Missing-Minor-Auxiliary`` whose (last) matching sub-sentence does not appear
  (case-insensitively) in ``prediction 1``. "Only" follows REFERENCE.md; the release
  discounts a sentence with any Minor flag — on dev the two agree (the 2 sentences flagged
  Minor and another type are matched by no corrected sub-sentence).
- Coverage of a prediction = share of the information sentences its own sub-sentences match;
  the six preferences are re-derived from the four coverages (ties = 0). Records without
  information sentences are skipped.

The window search is vectorised with NumPy over all passage sentences of a record at once
(cumulative character counts per word), giving exactly difflib's numbers.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Sequence

import numpy as np

from fgjax.data import qa_feedback_schema as schema

MIN_SIMILARITY = 0.85
WINDOW_SLACK = 0.05  # windows are int(5%) longer than the sub-sentence
PAD_WORD = "#"
MINOR_INFO_TYPE = "Missing-Minor-Auxiliary"

SentenceId = tuple[int, int]  # (passage_id, sentence_id), both 1-based as in the feedback


@dataclasses.dataclass(frozen=True)
class Match:
    subsentence: str
    sentence_id: SentenceId
    similarity: float


class PassageSentences:
    """The passage sentences of one record, indexed for fast window similarity."""

    def __init__(self, passages: Sequence[schema.FeedbackPassage]):
        self.ids: list[SentenceId] = []
        self.texts: list[str] = []
        words: list[str] = []
        lengths: list[int] = []
        for p, passage in enumerate(passages, start=1):
            for s, sentence in enumerate(passage.sentences, start=1):
                sentence_words = sentence.split()
                self.ids.append((p, s))
                self.texts.append(" ".join(sentence_words))
                words.extend(sentence_words)
                lengths.append(len(sentence_words))
        self.num_words = np.asarray(lengths, dtype=np.int64)  # [S]
        self.word_offset = np.concatenate([[0], np.cumsum(self.num_words)])[:-1]  # [S]
        alphabet = sorted({c for word in words for c in word})
        self.char_column = {c: i for i, c in enumerate(alphabet)}
        counts = np.zeros((len(words) + 1, len(alphabet)), dtype=np.int32)  # [W + 1, V]
        for w, word in enumerate(words, start=1):
            for c in word:
                counts[w, self.char_column[c]] += 1
        self.char_counts_cum = np.cumsum(counts, axis=0)  # [W + 1, V] counts of words[:w]
        word_chars = np.array([0] + [len(word) for word in words], dtype=np.int64)
        self.chars_cum = np.cumsum(word_chars)  # [W + 1] characters of words[:w]

    def __len__(self) -> int:
        return len(self.ids)

    def similarities(self, target: str) -> np.ndarray:
        """Best window similarity of whitespace-normalised ``target`` to each sentence: ``[S]``."""
        target_words = target.split()
        n = len(target_words) + int(WINDOW_SLACK * len(target_words))
        # Padded sentence length: at least n + 1 words, so every sentence has >= 2 windows.
        padded = np.maximum(self.num_words, n + 1)
        num_windows = padded - n + 1  # [S]
        sentence_of_window = np.repeat(np.arange(len(self)), num_windows)
        first_window = np.concatenate([[0], np.cumsum(num_windows)])[:-1]
        start = np.arange(num_windows.sum()) - first_window[sentence_of_window]  # in-sentence
        real_end = np.minimum(start + n, self.num_words[sentence_of_window])
        num_pads = start + n - real_end  # PAD_WORD words inside the window
        lo = self.word_offset[sentence_of_window] + start
        hi = self.word_offset[sentence_of_window] + real_end

        target_chars = collections.Counter(target)
        # Windows are words joined by single spaces: exactly n - 1 spaces each.
        matches = np.full(lo.shape, min(n - 1, target_chars.pop(" ", 0)), dtype=np.int64)
        pads_wanted = target_chars.pop(PAD_WORD, 0)
        if pads_wanted:
            column = self.char_column.get(PAD_WORD)
            have = num_pads if column is None else (
                num_pads + self.char_counts_cum[hi, column] - self.char_counts_cum[lo, column]
            )
            matches += np.minimum(have, pads_wanted)
        known = [(self.char_column[c], k) for c, k in target_chars.items() if c in self.char_column]
        if known:
            columns, wanted = np.asarray(known).T  # [C], [C]
            have = self.char_counts_cum[hi][:, columns] - self.char_counts_cum[lo][:, columns]
            matches += np.minimum(have, wanted).sum(axis=1)
        window_chars = self.chars_cum[hi] - self.chars_cum[lo] + num_pads + (n - 1)
        ratio = 2.0 * matches / (window_chars + len(target))
        best = np.maximum.reduceat(ratio, first_window)  # [S]
        for k, text in enumerate(self.texts):
            padding = n - int(self.num_words[k]) + 1
            context = text + f" {PAD_WORD}" * padding if padding > 0 else text
            if target in context:
                best[k] = 1.0
        return best

    def best_match(self, subsentence: str) -> Match | None:
        """The first most similar passage sentence (None when the record has none)."""
        if not self.ids:
            return None
        target = " ".join(subsentence.split())
        scores = self.similarities(target)
        k = int(np.argmax(scores))
        return Match(target, self.ids[k], float(scores[k]))


def matched_sentences(subsentences: Sequence[str], index: PassageSentences) -> list[Match]:
    """Matches at or above MIN_SIMILARITY, in sub-sentence order."""
    matches = [index.best_match(s) for s in subsentences]
    return [m for m in matches if m is not None and m.similarity >= MIN_SIMILARITY]


def information_sentences(
    record: schema.FeedbackRecord,
    corrected_subsentences: Sequence[str],
    index: PassageSentences,
) -> set[SentenceId]:
    """Passage sentences that carry the needed information (see the module docstring)."""
    flags: dict[SentenceId, set[str]] = collections.defaultdict(set)
    for m in record.feedback.missing_info:
        for s in m.sentence_ids:
            flags[(m.passage_id, s)].add(m.error_type)
    minor = {sentence for sentence, types in flags.items() if types == {MINOR_INFO_TYPE}}
    prediction_1 = record.predictions[0].lower()
    info: set[SentenceId] = set()
    discounted: set[SentenceId] = set()
    for match in matched_sentences(corrected_subsentences, index):
        info.add(match.sentence_id)
        if match.sentence_id in minor:
            # The last matching sub-sentence decides, as in the release.
            if match.subsentence.lower() in prediction_1:
                discounted.discard(match.sentence_id)
            else:
                discounted.add(match.sentence_id)
    return info - discounted


def coverage(
    subsentences: Sequence[str], info: set[SentenceId], index: PassageSentences
) -> float:
    """Share of ``info`` matched by the sub-sentences of one prediction."""
    if not info:
        raise ValueError("coverage needs at least one information sentence")
    covered = {m.sentence_id for m in matched_sentences(subsentences, index)}
    return len(covered & info) / len(info)


def preferences_from_scores(scores: Sequence[float]) -> tuple[int, ...]:
    """Six pairwise preferences (1 = first higher, 2 = second higher, 0 = tie)."""
    return tuple(
        0 if scores[i] == scores[j] else (1 if scores[i] > scores[j] else 2)
        for i, j in schema.PREFERENCE_PAIRS
    )
