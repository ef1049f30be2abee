"""SFT demonstrations for the synthetic QA world: gold answers with injected errors.

Each demonstration starts from the example's required facts and, independently with the
probability given per error type (``DEFAULT_RATES``), injects:

- ``Missing``: drops one required fact (two with probability 0.3; at least one stays);
- ``Wrong-Grounding``: changes one field of a kept fact to another value of its vocabulary;
- ``Redundant``: repeats a clause already in the answer at a later position;
- ``Unverifiable``: inserts a true fact of the subject that the passages do not state;
- ``Irrelevant``: inserts a passage fact about another person;
- ``Incoherent``: inserts a clause with its words shuffled so that it fits no template.

So the SFT policy starts imperfect in every way the oracle can see. ``Demonstration.injected``
records what was injected; the oracle finds exactly these types (a wrong fact also leaves its
correct value missing).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np

from fgjax.data import synthetic_world as world_lib
from fgjax.data.synthetic_world import Fact, SyntheticExample

# Per answer, the probability of injecting each error type; "Missing" = omitted facts.
DEFAULT_RATES: Mapping[str, float] = {
    "Missing": 0.25,
    "Wrong-Grounding": 0.2,
    "Redundant": 0.15,
    "Unverifiable": 0.15,
    "Irrelevant": 0.2,
    "Incoherent": 0.1,
}
INJECTION_ORDER = tuple(DEFAULT_RATES)  # Redundant copies come before inserted off-topic clauses
SECOND_OMISSION_PROB = 0.3
MAX_SHUFFLES = 100


@dataclasses.dataclass(frozen=True)
class Demonstration:
    example: SyntheticExample
    answer: str
    injected: frozenset[str]  # keys of DEFAULT_RATES that were injected


def _check_rates(rates: Mapping[str, float]) -> None:
    unknown = set(rates) - set(DEFAULT_RATES)
    if unknown:
        known = list(INJECTION_ORDER)
        raise ValueError(f"unknown error types in rates: {sorted(unknown)}; known: {known}")
    for name, p in rates.items():
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"rate for {name!r} must be in [0, 1], got {p}")


def _insert_at_random(rng: np.random.Generator, clauses: list, item, first: int = 0) -> None:
    clauses.insert(int(rng.integers(first, len(clauses) + 1)), item)


def _wrong_value(rng: np.random.Generator, fact: Fact) -> Fact:
    fields = world_lib.ATTRIBUTE_FIELDS[fact.attribute]
    k = int(rng.integers(len(fields)))
    others = [v for v in world_lib.FIELD_VALUES[fields[k]] if v != fact.values[k]]
    values = list(fact.values)
    values[k] = others[int(rng.integers(len(others)))]
    return Fact(fact.subject, fact.attribute, tuple(values))


def _unstated_fact(rng: np.random.Generator, example: SyntheticExample) -> Fact | None:
    """A true unstated fact; for examples rebuilt from prompts, one with random values."""
    if example.unstated:
        return example.unstated[int(rng.integers(len(example.unstated)))]
    free = [a for a in world_lib.ATTRIBUTES if example.stated_fact(a) is None]
    if not free:
        return None
    attribute = free[int(rng.integers(len(free)))]
    values = tuple(
        world_lib.FIELD_VALUES[f][int(rng.integers(len(world_lib.FIELD_VALUES[f])))]
        for f in world_lib.ATTRIBUTE_FIELDS[attribute]
    )
    return Fact(example.subject, attribute, values)


def garbled_clause(rng: np.random.Generator, fact: Fact) -> str:
    """The words of ``fact``'s clause shuffled until they fit no template. The first word is
    not a year: sentence splitters do not start a sentence at a number, so a garbled clause
    opening a sentence would merge into the previous one."""
    words = fact.clause().split()
    for _ in range(MAX_SHUFFLES):
        shuffled = " ".join(words[k] for k in rng.permutation(len(words)))
        if shuffled[0].isalpha() and world_lib.parse_clause(shuffled) is None:
            return shuffled
    raise RuntimeError(f"could not garble {fact.clause()!r} in {MAX_SHUFFLES} shuffles")


def make_demonstration(
    example: SyntheticExample,
    rng: np.random.Generator,
    rates: Mapping[str, float] = DEFAULT_RATES,
) -> Demonstration:
    """One answer with errors injected independently at ``rates`` (see the module docstring)."""
    _check_rates(rates)
    clauses: list[Fact | str] = list(example.required)
    injected = set()
    for name in INJECTION_ORDER:
        if rng.random() >= rates.get(name, 0.0):
            continue
        if name == "Missing":
            if len(clauses) < 2:
                continue
            num = min(1 + int(rng.random() < SECOND_OMISSION_PROB), len(clauses) - 1)
            dropped = set(rng.choice(len(clauses), num, replace=False).tolist())
            clauses = [c for k, c in enumerate(clauses) if k not in dropped]
        elif name == "Wrong-Grounding":
            k = int(rng.integers(len(clauses)))
            clauses[k] = _wrong_value(rng, clauses[k])
        elif name == "Redundant":
            k = int(rng.integers(len(clauses)))
            _insert_at_random(rng, clauses, clauses[k], first=k + 1)
        elif name == "Unverifiable":
            fact = _unstated_fact(rng, example)
            if fact is None:
                continue
            _insert_at_random(rng, clauses, fact)
        elif name == "Irrelevant":
            if not example.distractors:
                continue
            distractor = example.distractors[int(rng.integers(len(example.distractors)))]
            _insert_at_random(rng, clauses, distractor)
        else:  # Incoherent
            source = example.required[int(rng.integers(len(example.required)))]
            _insert_at_random(rng, clauses, garbled_clause(rng, source))
        injected.add(name)
    texts = [c.clause() if isinstance(c, Fact) else c for c in clauses]
    return Demonstration(example, world_lib.render_answer(texts), frozenset(injected))


def make_demonstrations(
    examples: Sequence[SyntheticExample],
    seed: int,
    rates: Mapping[str, float] = DEFAULT_RATES,
) -> list[Demonstration]:
    """One demonstration per example, drawn with ``np.random.default_rng(seed)``."""
    rng = np.random.default_rng(seed)
    return [make_demonstration(example, rng, rates) for example in examples]
