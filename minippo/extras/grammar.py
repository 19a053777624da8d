"""Fluency, measured exactly: does a line belong to the built-in grammar of minippo/data.py?

Reward hacking breaks grammar long before it breaks the reward (see `python train.py --beta 0`), so
the metrics and the final summary report the grammatical fraction of the sampled sentences.
"""
from minippo.data import ADJECTIVES, ADVERBS, CONJUNCTIONS, SUBJECTS, VERBS


def is_grammatical(line: str) -> bool:
    """True exactly when `line` can be produced by make_sentence (a tiny hand-written parser)."""
    if not line.endswith(".") or line != line.strip() or "  " in line:
        return False
    words = line[:-1].split(" ")

    def subject_verb(i):        # index after "subject verb", or -1
        if " ".join(words[i:i + 2]) in SUBJECTS and i + 2 < len(words) and words[i + 2] in VERBS:
            return i + 3
        return -1

    def adjective_phrase(i):    # index after "[adverb] adjective", or -1
        if i < len(words) and words[i] in ADVERBS:
            i += 1
        return i + 1 if i < len(words) and words[i] in ADJECTIVES else -1

    i = subject_verb(0)
    i = adjective_phrase(i) if i >= 0 else -1
    if i < 0 or i == len(words) or words[i] not in CONJUNCTIONS:   # broken, ended, or no conjunction
        return i == len(words)
    j = subject_verb(i + 1)
    return adjective_phrase(j if j >= 0 else i + 1) == len(words)


def grammatical_fraction(lines) -> float:
    return sum(map(is_grammatical, lines)) / max(1, len(lines))
