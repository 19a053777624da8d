import re

import pytest

from minippo.data import ADJECTIVES, ADVERBS, CONJUNCTIONS, SUBJECTS, VERBS
from minippo.data import Vocab, make_corpus, make_prompts
from minippo.extras.grammar import is_grammatical


def test_corpus_is_deterministic_per_seed():
    assert make_corpus(200, seed=3) == make_corpus(200, seed=3)
    assert make_corpus(200, seed=3) != make_corpus(200, seed=4)


def test_every_generated_line_is_grammatical():
    lines = make_corpus(5000, seed=0)
    assert all(is_grammatical(line) for line in lines)
    assert any(" and " in l for l in lines) and any(" but " in l for l in lines)  # each 1 line in 4


def reference_regex():
    """An independent recogniser of the same grammar, written as a regular expression."""
    alt = lambda words: "(?:" + "|".join(map(re.escape, words)) + ")"
    clause = f"{alt(SUBJECTS)} {alt(VERBS)} (?:{alt(ADVERBS)} )?{alt(ADJECTIVES)}"
    tail = f"(?: {alt(CONJUNCTIONS)} (?:{alt(SUBJECTS)} {alt(VERBS)} )?(?:{alt(ADVERBS)} )?{alt(ADJECTIVES)})?"
    return re.compile(clause + tail + r"\.")


def test_mutated_lines_are_rejected():
    """A swapped word, a dropped word (other than an optional adverb) or a repeated word breaks the
    sentence; and on every mutant is_grammatical agrees with an independent regex."""
    regex = reference_regex()
    for line in make_corpus(1000, seed=1):
        words = line[:-1].split(" ")
        for i in range(len(words) - 1):           # every position, not a drawn one: 5,219 of them
            swapped = words[:i] + [words[i + 1], words[i]] + words[i + 2:]
            repeated = words[:i + 1] + [words[i]] + words[i + 1:]
            dropped = words[:i] + words[i + 1:]
            for mutant in (swapped, repeated, dropped):
                text = " ".join(mutant) + "."
                assert is_grammatical(text) == bool(regex.fullmatch(text)), text
            if swapped != words:
                assert not is_grammatical(" ".join(swapped) + "."), swapped
            assert not is_grammatical(" ".join(repeated) + "."), repeated
            if words[i] not in ADVERBS:
                assert not is_grammatical(" ".join(dropped) + "."), dropped
    bad = ["the food is good", "the food is good.\n", " the food is good.", "food is good.", ""]
    bad += ["the food is good and.", "the food is very very good.", "the food is good but."]
    for line in bad:
        assert not is_grammatical(line), line


def test_prompts_are_first_words():
    lines = make_corpus(2000, seed=0)
    prompts = make_prompts(lines)
    assert sorted(prompts) == sorted(SUBJECTS)  # one of 12 missed: 12 (11/12)^2000 = 3e-75


def test_tokenizer_round_trip_and_unknown_character():
    text = "\n".join(make_corpus(100, seed=0))
    vocab = Vocab.from_text(text)
    assert vocab.decode(vocab.encode(text)) == text
    assert vocab.pad_id == vocab.size == len(vocab.chars) and vocab.pad_id != vocab.eos_id
    assert vocab.decode(vocab.encode("the food\n") + [vocab.pad_id]) == "the food\n"
    with pytest.raises(ValueError, match="'Z'"):
        vocab.encode("the Zoo")
