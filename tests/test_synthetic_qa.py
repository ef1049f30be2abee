"""Synthetic QA world: seeded generation, grammar, prompt schema, tokenizer, demonstrations."""

import numpy as np
import pytest

from fgjax import text
from fgjax.data import qa_feedback_schema as schema
from fgjax.data import rm_builders as rb
from fgjax.data import synthetic_demos as demos_lib
from fgjax.data import synthetic_oracle as oracle
from fgjax.data import synthetic_qa
from fgjax.data import synthetic_world as world_lib

SEED = 0


@pytest.fixture(scope="module")
def world():
    return world_lib.make_world(SEED)


@pytest.fixture(scope="module")
def examples(world):
    return world_lib.make_examples(world, 400, seed=SEED + 1)


def test_generation_is_deterministic_given_the_seed(world, examples):
    assert world_lib.make_world(SEED) == world
    assert world_lib.make_examples(world, 400, seed=SEED + 1) == examples
    assert world_lib.make_world(SEED + 1).names != world.names
    assert world_lib.make_examples(world, 400, seed=SEED + 2) != examples
    first = demos_lib.make_demonstrations(examples, seed=7)
    assert demos_lib.make_demonstrations(examples, seed=7) == first
    assert demos_lib.make_demonstrations(examples, seed=8) != first


def test_world_vocabulary_is_small_and_closed(world):
    assert len(set(world.names)) == len(world.names) == 48
    for name in world.names:
        for attribute, fact in world.facts[name].items():
            assert fact.subject == name and fact.attribute == attribute
            for field, value in zip(world_lib.ATTRIBUTE_FIELDS[attribute], fact.values):
                assert value in world_lib.FIELD_VALUES[field]
    word_types = {w.strip(".,?|") for t in world_lib.tokenizer_corpus(world) for w in t.split()}
    assert 150 <= len(word_types) <= 300


def test_clauses_render_and_parse_back(world):
    for name in world.names[:5]:
        for fact in world.facts[name].values():
            assert world_lib.parse_clause(fact.clause()) == fact
            assert world_lib.parse_clause(f" and {fact.clause()}. ") == fact
            assert world_lib.parse_clause("And " + fact.clause() + ",") == fact
    assert world_lib.parse_clause("Talor Menvik was born in Qqq in 1812").values == ("Qqq", "1812")
    for garbage in ("", "Talor Menvik", "was born in Varnholt in 1812", "the the the the",
                    "Talor Menvik was born in Varnholt in 1812 and more"):
        assert world_lib.parse_clause(garbage) is None
    with pytest.raises(ValueError, match="unknown attribute"):
        world_lib.Fact("A B", "height", ("x",))


def test_examples_have_required_facts_at_their_locations(examples):
    for example in examples:
        assert world_lib.MIN_STATED <= len(example.required) <= world_lib.MAX_STATED
        assert len(example.required) + len(example.unstated) == len(world_lib.ATTRIBUTES)
        assert world_lib.parse_question(example.question) == example.subject
        for fact, (p, s) in zip(example.required, example.locations, strict=True):
            assert fact.subject == example.subject
            assert world_lib.parse_clause(example.passages[p - 1].sentences[s - 1]) == fact
        assert all(d.subject != example.subject for d in example.distractors)
        assert example.passages[0].title == example.subject
        assert 40 <= len(example.prompt_text().split()) <= 90


def test_gold_clauses_are_exactly_the_subsentences(examples):
    """The release's 5-word rule cuts every gold answer at each of its clauses."""
    for example in examples[:100]:
        gold = example.gold
        subsentences = [gold[a:b] for a, b in text.segment_spans(gold, "subsentence")]
        clauses = [f.clause() for f in example.required]
        assert [world_lib.parse_clause(s) for s in subsentences] == list(example.required)
        assert [s.rstrip(",.").removeprefix("and ") for s in subsentences] == clauses
        assert len(text.segment_spans(gold, "sentence")) == (len(clauses) + 1) // 2
        assert 15 <= len(gold.split()) <= 40


def test_prompt_records_follow_the_schema_and_parse_back(examples):
    records = [e.to_prompt_record() for e in examples[:50]]
    prompts = schema.parse_prompts(records, "synthetic")
    for example, prompt in zip(examples, prompts):
        # The policy prompt equals the RM prompt rebuilt from the feedback passages.
        passages = [(p[0], " ".join(p[1:])) for p in example.feedback_passages()]
        assert rb.rm_prompt(example.question, passages) == prompt.text + " answer:"
        assert prompt.answers == (example.gold,)
        rebuilt = world_lib.example_from_prompt(prompt)
        assert rebuilt == example.__class__(**{**example.__dict__, "unstated": ()})
    bad = schema.QAPrompt("Who was Talor Menvik?", "", (schema.PromptPassage("T", "Hello."),), ())
    with pytest.raises(ValueError, match="passage 1 sentence 1 is not a clause"):
        world_lib.example_from_prompt(bad)
    with pytest.raises(ValueError, match="fits none of"):
        world_lib.parse_question("Where is Talor Menvik?")


def test_world_tokenizer_keeps_words_whole_and_sequences_short(world, examples, tmp_path):
    tokenizer = world_lib.train_world_tokenizer(world, str(tmp_path / "tok"), vocab_size=1024)
    for example in examples[:50]:
        gold_tokens = tokenizer.tokenize(example.gold)
        assert len(gold_tokens) == len(example.gold.split()) + example.gold.count(",") + (
            example.gold.count(".")
        )
        assert 20 <= len(gold_tokens) <= 40
        assert 60 <= len(tokenizer(example.prompt_text())["input_ids"]) <= 120


def _oracle_types(verdict):
    return {t for t in oracle.METRIC_TYPES if verdict.error_count(t) > 0}


def test_demonstrations_inject_every_error_type_at_its_rate(examples):
    demos = demos_lib.make_demonstrations(examples, seed=SEED + 2)
    verdicts = [oracle.annotate(d.example, d.answer) for d in demos]
    for demo, verdict in zip(demos, verdicts):
        # The oracle sees exactly what was injected; a wrong value also leaves a fact missing.
        implied = {"Missing"} if "Wrong-Grounding" in demo.injected else set()
        assert _oracle_types(verdict) == set(demo.injected) | implied, demo.answer
    metrics = oracle.set_metrics(verdicts)
    for error_type, rate in demos_lib.DEFAULT_RATES.items():
        injected = np.mean([error_type in d.injected for d in demos])
        assert abs(injected - rate) < 0.06, error_type
        assert metrics[f"error_rate/{error_type}"] >= 0.05
    assert 0.2 <= 1 - metrics["error_rate/any"] <= 0.5  # some clean answers remain


def test_demonstration_rates_zero_and_one(examples):
    rng = np.random.default_rng(0)
    clean = demos_lib.make_demonstration(examples[0], rng, rates={})
    assert clean.answer == examples[0].gold and not clean.injected
    everything = {name: 1.0 for name in demos_lib.DEFAULT_RATES}
    for example in examples[:30]:
        demo = demos_lib.make_demonstration(example, rng, everything)
        assert demo.injected == frozenset(demos_lib.DEFAULT_RATES)
        assert _oracle_types(oracle.annotate(example, demo.answer)) == set(oracle.METRIC_TYPES)
    with pytest.raises(ValueError, match="unknown error types"):
        demos_lib.make_demonstration(examples[0], rng, {"Typo": 0.1})
    with pytest.raises(ValueError, match="must be in"):
        demos_lib.make_demonstration(examples[0], rng, {"Redundant": 1.5})


def test_garbled_clause_fits_no_template(world):
    rng = np.random.default_rng(0)
    for fact in world.facts[world.names[0]].values():
        garbled = demos_lib.garbled_clause(rng, fact)
        assert world_lib.parse_clause(garbled) is None and garbled[0].isalpha()
        assert sorted(garbled.split()) == sorted(fact.clause().split())


def test_make_task_draws_everything_from_one_seed():
    task = synthetic_qa.make_task(seed=3, num_train=40, num_eval=10)
    assert synthetic_qa.make_task(seed=3, num_train=40, num_eval=10) == task
    assert len(task.train) == len(task.demonstrations) == 40 and len(task.eval) == 10
    assert task.train != task.eval[:10] and task.train[:10] != task.eval
    assert [d.example for d in task.demonstrations] == list(task.train)
    assert synthetic_qa.make_task(seed=4, num_train=40, num_eval=10).world != task.world
