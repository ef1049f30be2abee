"""A small synthetic QA world with an exact grammar, for end-to-end fine-grained RLHF on a CPU.

The world is a set of invented people. Each has five *attributes*, every value drawn from a
small closed vocabulary: ``birth`` (city, year), ``occupation``, ``work``, ``prize`` (prize,
year) and ``death`` (city, year). A fact is written as one *clause* of a fixed template,
e.g. ``"Talor Menvik was born in Varnholt in 1812"``. Passages are sentences that are single
clauses; answers join clauses in pairs, ``"<clause>, and <clause>."``. Every clause has at
least 6 words and ``"and <clause>"`` at least 7, so with ``fgjax.text``'s sub-sentence rule
(a cut needs >= 5 words before and >= 6 after) every clause of an answer is exactly one
sub-sentence and every answer sentence one or two of them.

An example asks about one person (``"Who was X?"``). Passage 1 (title X) states 3 or 4 of X's
five facts in canonical order plus one distractor fact about another person at a random
place; passage 2 (title: another person) states two facts about that person. The *required*
facts are X's stated facts; the gold answer states exactly them. X's facts left out of the
passages are *unstated* (an answer stating one is unverifiable).

Parsing is value-agnostic: a clause fits a template whatever capitalised word stands where a
city goes, so an answer's wrong city is read as a (wrong) city, not as garbage. The oracle
(``synthetic_oracle``) uses ``parse_clause``; ``example_from_prompt`` rebuilds an example from
a QA-Feedback prompt record by parsing its passages. Everything is seeded (NumPy Generator).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Sequence

import numpy as np

from fgjax.data import qa_feedback_schema as schema

# Closed vocabularies (invented names; years on a coarse grid keep the word types few).
FIRST_NAMES = (
    "Talor", "Orin", "Mirela", "Keswin", "Anvar", "Belisa", "Corvin", "Dalia",
    "Elric", "Fenna", "Garrow", "Hesta", "Ivor", "Jorna", "Kael", "Lunet",
)  # fmt: skip
LAST_NAMES = (
    "Menvik", "Dask", "Varrow", "Quellin", "Ostrand", "Pelgar", "Rusk", "Sorvell",
    "Tamberly", "Ulmar", "Wendrel", "Yastrom", "Zoller", "Brisk", "Carrow", "Eskell",
)  # fmt: skip
CITIES = (
    "Varnholt", "Eskaby", "Quellstad", "Tarnis", "Olvenport", "Brackmoor",
    "Silthaven", "Durnwick", "Peloria", "Halvenor", "Zerath", "Mirrowfen",
)  # fmt: skip
OCCUPATIONS = (
    "painter", "sculptor", "poet", "composer", "weaver",
    "botanist", "chemist", "cartographer", "physician", "novelist",
)  # fmt: skip
WORK_ADJECTIVES = ("Silver", "Quiet", "Amber", "Hollow", "Crimson", "Distant", "Winter", "Broken")
WORK_NOUNS = ("Harbor", "Garden", "Lantern", "Tower", "River", "Mirror", "Orchard", "Bridge")
WORKS = tuple(f"{a} {n}" for a in WORK_ADJECTIVES for n in WORK_NOUNS)
PRIZES = ("Orlen", "Vesta", "Caldor", "Marrow", "Ithen", "Tessaly")
BIRTH_YEARS = tuple(str(y) for y in range(1800, 1840, 2))
PRIZE_YEARS = tuple(str(y) for y in range(1850, 1880, 2))
DEATH_YEARS = tuple(str(y) for y in range(1880, 1910, 2))

FIELD_VALUES: dict[str, tuple[str, ...]] = {
    "birth_city": CITIES, "birth_year": BIRTH_YEARS, "occupation": OCCUPATIONS, "work": WORKS,
    "prize": PRIZES, "prize_year": PRIZE_YEARS, "death_city": CITIES, "death_year": DEATH_YEARS,
}  # fmt: skip
_CAPITALISED = r"[A-Z][a-z]+"
FIELD_PATTERNS = {
    "birth_city": _CAPITALISED, "birth_year": r"\d{4}", "occupation": r"[a-z]+",
    "work": rf"{_CAPITALISED} {_CAPITALISED}", "prize": _CAPITALISED, "prize_year": r"\d{4}",
    "death_city": _CAPITALISED, "death_year": r"\d{4}",
}  # fmt: skip
NAME_PATTERN = rf"{_CAPITALISED} {_CAPITALISED}"

# Attribute -> clause template; canonical order = answer order of the gold.
TEMPLATES = {
    "birth": "{subject} was born in {birth_city} in {birth_year}",
    "occupation": "{subject} worked as a {occupation}",
    "work": "{subject} created the {work}",
    "prize": "{subject} won the {prize} Prize in {prize_year}",
    "death": "{subject} died in {death_city} in {death_year}",
}
ATTRIBUTES = tuple(TEMPLATES)
ATTRIBUTE_FIELDS = {a: tuple(re.findall(r"{(\w+)}", t)[1:]) for a, t in TEMPLATES.items()}
QUESTION_TEMPLATES = (
    "Who was {subject}?", "Tell me about {subject}.", "What is known about {subject}?"
)
CONNECTIVE = "and"
MIN_STATED, MAX_STATED = 3, 4  # required facts per example
NUM_SECOND_PASSAGE_FACTS = 2


def _clause_regex(template: str) -> re.Pattern:
    pattern = re.escape(template)
    pattern = pattern.replace(r"\{subject\}", f"(?P<subject>{NAME_PATTERN})")
    for field, field_pattern in FIELD_PATTERNS.items():
        pattern = pattern.replace(re.escape("{" + field + "}"), f"(?P<{field}>{field_pattern})")
    return re.compile(pattern)


_CLAUSE_REGEXES = {a: _clause_regex(t) for a, t in TEMPLATES.items()}
_QUESTION_REGEXES = tuple(
    re.compile(re.escape(q).replace(r"\{subject\}", f"(?P<subject>{NAME_PATTERN})"))
    for q in QUESTION_TEMPLATES
)
_LEADING_CONNECTIVE = re.compile(rf"^{CONNECTIVE}\s+", re.IGNORECASE)


@dataclasses.dataclass(frozen=True)
class Fact:
    """One clause's content: ``values`` in the order of ``ATTRIBUTE_FIELDS[attribute]``."""

    subject: str
    attribute: str
    values: tuple[str, ...]

    def __post_init__(self):
        if self.attribute not in TEMPLATES:
            raise ValueError(f"unknown attribute {self.attribute!r}; known: {ATTRIBUTES}")
        if len(self.values) != len(ATTRIBUTE_FIELDS[self.attribute]):
            raise ValueError(f"{self.attribute} needs fields {ATTRIBUTE_FIELDS[self.attribute]}")

    @property
    def key(self) -> tuple[str, str]:
        return self.subject, self.attribute

    def clause(self) -> str:
        fields = dict(zip(ATTRIBUTE_FIELDS[self.attribute], self.values))
        return TEMPLATES[self.attribute].format(subject=self.subject, **fields)


def parse_clause(clause: str) -> Fact | None:
    """The fact a clause states, or None when it fits no template.

    Tolerates a leading "and", surrounding whitespace and a trailing ``.,;!?``; nothing else.
    """
    text = _LEADING_CONNECTIVE.sub("", clause.strip()).rstrip(".,;!? ")
    for attribute, regex in _CLAUSE_REGEXES.items():
        match = regex.fullmatch(text)
        if match:
            values = tuple(match.group(f) for f in ATTRIBUTE_FIELDS[attribute])
            return Fact(match.group("subject"), attribute, values)
    return None


def render_answer(clauses: Sequence[str]) -> str:
    """Clauses joined in pairs: ``"c1, and c2. c3, and c4. c5."`` (empty for no clauses).

    Sentences start with a capital letter (clauses of the grammar do already; a garbled one
    may not), so that sentence splitters end the sentence before it.
    """
    sentences = []
    for i in range(0, len(clauses), 2):
        sentence = f", {CONNECTIVE} ".join(clauses[i : i + 2]) + "."
        sentences.append(sentence[:1].upper() + sentence[1:])
    return " ".join(sentences)


def parse_question(question: str) -> str:
    """The person a question asks about; ValueError naming the question if none fits."""
    for regex in _QUESTION_REGEXES:
        match = regex.fullmatch(question.strip())
        if match:
            return match.group("subject")
    raise ValueError(f"question {question!r} fits none of {QUESTION_TEMPLATES}")


@dataclasses.dataclass(frozen=True)
class World:
    """People and their true facts: ``facts[name][attribute]``."""

    names: tuple[str, ...]
    facts: dict[str, dict[str, Fact]]


@dataclasses.dataclass(frozen=True)
class Passage:
    title: str
    sentences: tuple[str, ...]  # one clause + "." each

    @property
    def content(self) -> str:
        return " ".join(self.sentences)


@dataclasses.dataclass(frozen=True)
class SyntheticExample:
    """One question with its passages, required facts and gold answer."""

    question: str
    subject: str
    passages: tuple[Passage, ...]
    required: tuple[Fact, ...]  # the subject's stated facts, canonical attribute order
    locations: tuple[tuple[int, int], ...]  # per required fact: 1-based (passage, sentence)
    distractors: tuple[Fact, ...]  # stated facts about other people
    unstated: tuple[Fact, ...]  # the subject's true facts absent from the passages
    gold: str

    def stated_fact(self, attribute: str) -> Fact | None:
        return next((f for f in self.required if f.attribute == attribute), None)

    def prompt_text(self) -> str:
        """``question: Q context: wikipage: T text: P | wikipage: ...`` (the policy prompt)."""
        parts = [f"wikipage: {p.title} text: {p.content}" for p in self.passages]
        return f"question: {self.question} context: " + " | ".join(parts)

    def to_prompt_record(self) -> dict:
        """A JSON-able record in the QA-Feedback ``{split}.json`` schema."""
        return {
            "question": self.question,
            "text": self.prompt_text(),
            "passages": [{"title": p.title, "content": p.content} for p in self.passages],
            "answer": [self.gold],
        }

    def feedback_passages(self) -> list[list[str]]:
        """Passages as in ``{split}_feedback.json``: ``[title, sentence_1, ...]``."""
        return [[p.title, *p.sentences] for p in self.passages]


def make_world(seed: int, num_people: int = 48) -> World:
    """``num_people`` distinct invented people, every attribute value drawn uniformly."""
    max_people = len(FIRST_NAMES) * len(LAST_NAMES)
    if not 3 <= num_people <= max_people:
        raise ValueError(f"num_people must be in 3..{max_people}, got {num_people}")
    rng = np.random.default_rng(seed)
    pairs = rng.choice(max_people, size=num_people, replace=False)
    names = tuple(f"{FIRST_NAMES[k // len(LAST_NAMES)]} {LAST_NAMES[k % len(LAST_NAMES)]}"
                  for k in pairs)
    facts = {}
    for name in names:
        facts[name] = {
            attribute: Fact(name, attribute, tuple(_draw(rng, FIELD_VALUES[f]) for f in fields))
            for attribute, fields in ATTRIBUTE_FIELDS.items()
        }
    return World(names=names, facts=facts)


def _draw(rng: np.random.Generator, values: Sequence[str]) -> str:
    return values[int(rng.integers(len(values)))]


def _sentence(fact: Fact) -> str:
    return fact.clause() + "."


def make_example(world: World, rng: np.random.Generator) -> SyntheticExample:
    """One example about a random person (see the module docstring for its layout)."""
    people = rng.choice(len(world.names), 3, replace=False)
    subject, second, third = (world.names[i] for i in people)
    num_stated = int(rng.integers(MIN_STATED, MAX_STATED + 1))
    stated = sorted(rng.choice(len(ATTRIBUTES), num_stated, replace=False))
    required = tuple(world.facts[subject][ATTRIBUTES[k]] for k in stated)
    unstated = tuple(world.facts[subject][a] for k, a in enumerate(ATTRIBUTES) if k not in stated)
    distractor = world.facts[third][ATTRIBUTES[int(rng.integers(len(ATTRIBUTES)))]]
    first_sentences = [_sentence(f) for f in required]
    slot = int(rng.integers(len(first_sentences) + 1))
    first_sentences.insert(slot, _sentence(distractor))
    locations = tuple((1, k + 1 + (k >= slot)) for k in range(len(required)))
    second_attrs = sorted(rng.choice(len(ATTRIBUTES), NUM_SECOND_PASSAGE_FACTS, replace=False))
    second_facts = tuple(world.facts[second][ATTRIBUTES[k]] for k in second_attrs)
    passages = (
        Passage(subject, tuple(first_sentences)),
        Passage(second, tuple(_sentence(f) for f in second_facts)),
    )
    template = QUESTION_TEMPLATES[int(rng.integers(len(QUESTION_TEMPLATES)))]
    question = template.format(subject=subject)
    return SyntheticExample(
        question=question,
        subject=subject,
        passages=passages,
        required=required,
        locations=locations,
        distractors=(distractor, *second_facts),
        unstated=unstated,
        gold=render_answer([f.clause() for f in required]),
    )


def make_examples(world: World, num_examples: int, seed: int) -> list[SyntheticExample]:
    """``num_examples`` examples drawn with ``np.random.default_rng(seed)``."""
    rng = np.random.default_rng(seed)
    return [make_example(world, rng) for _ in range(num_examples)]


_SENTENCE_BREAK = re.compile(r"(?<=\.)\s+")


def example_from_prompt(prompt: schema.QAPrompt) -> SyntheticExample:
    """Rebuild an example from its QA-Feedback prompt record by parsing question and passages.

    ``unstated`` is empty (the world is not in the record). Every passage sentence must be a
    clause of the grammar; ValueError names the first one that is not.
    """
    subject = parse_question(prompt.question)
    passages, required, locations, distractors = [], [], [], []
    for p, passage in enumerate(prompt.passages, start=1):
        sentences = tuple(s for s in _SENTENCE_BREAK.split(passage.content.strip()) if s)
        for s, sentence in enumerate(sentences, start=1):
            fact = parse_clause(sentence)
            if fact is None:
                raise ValueError(f"passage {p} sentence {s} is not a clause: {sentence!r}")
            if fact.subject == subject:
                required.append(fact)
                locations.append((p, s))
            else:
                distractors.append(fact)
        passages.append(Passage(passage.title or "", sentences))
    if not required:
        raise ValueError(f"no passage sentence states a fact about {subject!r}")
    order = sorted(range(len(required)), key=lambda k: ATTRIBUTES.index(required[k].attribute))
    required_sorted = tuple(required[k] for k in order)
    return SyntheticExample(
        question=prompt.question,
        subject=subject,
        passages=tuple(passages),
        required=required_sorted,
        locations=tuple(locations[k] for k in order),
        distractors=tuple(distractors),
        unstated=(),
        gold=render_answer([f.clause() for f in required_sorted]),
    )


def tokenizer_corpus(world: World, examples: Iterable[SyntheticExample] = ()) -> list[str]:
    """Texts covering every word type: all facts of the world, every vocabulary value in a
    clause, the prompt and gold of each example, and the prompt scaffolding words."""
    texts = [render_answer([f.clause() for f in world.facts[n].values()]) for n in world.names]
    subject = world.names[0]
    for attribute, fields in ATTRIBUTE_FIELDS.items():
        for field in fields:
            fact = world.facts[subject][attribute]
            for value in FIELD_VALUES[field]:
                values = tuple(value if f == field else v for f, v in zip(fields, fact.values))
                texts.append(Fact(subject, attribute, values).clause() + ".")
    texts += [q.format(subject=n) for q in QUESTION_TEMPLATES for n in world.names]
    texts.append("question: context: wikipage: text: | answer:")
    for example in examples:
        texts += [example.prompt_text(), example.gold]
    return texts


def train_world_tokenizer(
    world: World,
    path: str,
    kind: str = "bpe",
    vocab_size: int = 512,
    examples: Iterable[SyntheticExample] = (),
    **kwargs,
):
    """A tokenizer trained on ``tokenizer_corpus(world, examples)``, saved at ``path``.

    ``kind`` / ``vocab_size`` / ``kwargs`` as ``fgjax.tokenizers.train_tokenizer``.
    """
    from fgjax.tokenizers import train_tokenizer

    return train_tokenizer(tokenizer_corpus(world, examples), kind, vocab_size, path, **kwargs)
