"""ROUGE-Lsum (summary-level LCS), written to give the numbers of Google's ``rouge-score``.

Rules of ``rouge_score.rouge_scorer.RougeScorer(["rougeLsum"], use_stemmer=False)``:
text is lowercased, every run of non-alphanumeric characters becomes a space, tokens are the
non-empty ``[a-z0-9]+`` words (no stemming). Sentences are the non-empty lines of the text.
For every reference sentence the union of its longest common subsequences with each candidate
sentence is taken (one LCS per pair, read back as rouge-score does, which decides ties);
each token of that union is a hit once while both texts still have an unused copy of it.
Precision = hits / candidate tokens, recall = hits / reference tokens, F1 their harmonic mean.

QA evaluation (``fgjax.evaluate``) splits texts into sentences, joins them with newlines,
scores the answer against every reference answer and keeps the best F1 x 100.
"""

from __future__ import annotations

import collections
import dataclasses
import re
from collections.abc import Callable, Sequence

_NON_ALPHANUMERIC = re.compile(r"[^a-z0-9]+")


@dataclasses.dataclass(frozen=True)
class Score:
    precision: float
    recall: float
    fmeasure: float


def tokenize(text: str) -> list[str]:
    """Lowercase ``[a-z0-9]+`` words, as rouge-score's default tokenizer without stemming."""
    return _NON_ALPHANUMERIC.sub(" ", text.lower()).split()


def _lcs_reference_indices(reference: Sequence[str], candidate: Sequence[str]) -> list[int]:
    """Indices into ``reference`` of one longest common subsequence with ``candidate``
    (the DP table, then the back-trace that prefers moving up on ties, as rouge-score)."""
    rows, cols = len(reference), len(candidate)
    table = [[0] * (cols + 1) for _ in range(rows + 1)]
    for i in range(1, rows + 1):
        above, here, ref_token = table[i - 1], table[i], reference[i - 1]
        for j in range(1, cols + 1):
            if ref_token == candidate[j - 1]:
                here[j] = above[j - 1] + 1
            else:
                here[j] = max(above[j], here[j - 1])
    indices = []
    i, j = rows, cols
    while i > 0 and j > 0:
        if reference[i - 1] == candidate[j - 1]:
            indices.append(i - 1)
            i, j = i - 1, j - 1
        elif table[i][j - 1] > table[i - 1][j]:
            j -= 1
        else:
            i -= 1
    return indices[::-1]


def _f1(precision: float, recall: float) -> float:
    return 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0


def rouge_lsum(reference: str, candidate: str) -> Score:
    """ROUGE-Lsum of ``candidate`` against ``reference`` (sentences = non-empty lines)."""
    ref_sentences = [tokenize(line) for line in reference.split("\n") if line]
    cand_sentences = [tokenize(line) for line in candidate.split("\n") if line]
    ref_total = sum(map(len, ref_sentences))
    cand_total = sum(map(len, cand_sentences))
    if not ref_sentences or not cand_sentences or not ref_total or not cand_total:
        return Score(0.0, 0.0, 0.0)
    ref_left = collections.Counter(t for s in ref_sentences for t in s)
    cand_left = collections.Counter(t for s in cand_sentences for t in s)
    hits = 0
    for sentence in ref_sentences:
        union = set()
        for cand in cand_sentences:
            union.update(_lcs_reference_indices(sentence, cand))
        for token in (sentence[i] for i in sorted(union)):
            if ref_left[token] > 0 and cand_left[token] > 0:
                hits += 1
                ref_left[token] -= 1
                cand_left[token] -= 1
    precision, recall = hits / cand_total, hits / ref_total
    return Score(precision, recall, _f1(precision, recall))


def sentences_per_line(text: str, split_sentences: Callable[[str], Sequence[tuple[int, int]]]):
    """``text`` with its sentences (character spans from ``split_sentences``) one per line."""
    return "\n".join(text[start:end] for start, end in split_sentences(text))


def best_rouge_lsum_f1(
    references: Sequence[str],
    candidate: str,
    split_sentences: Callable[[str], Sequence[tuple[int, int]]],
) -> float:
    """Best ROUGE-Lsum F1 x 100 of ``candidate`` over ``references`` (sentences on lines)."""
    if not references:
        raise ValueError("best_rouge_lsum_f1 needs at least one reference")
    candidate = sentences_per_line(candidate, split_sentences)
    return 100.0 * max(
        rouge_lsum(sentences_per_line(ref, split_sentences), candidate).fmeasure
        for ref in references
    )
