"""The built-in corpus, its grammar, the prompts x and a character-level tokenizer.

Nothing is downloaded: a small seeded grammar writes short review sentences such as
    "the food was very good but the staff is rude."
one per line. prepare() turns the lines into the tokenizer, the token ids pretraining reads and the
queries x that RL answers. (The command measures fluency with an exact parser of this grammar,
minippo/extras/grammar.py: reward hacking breaks grammar long before it breaks the reward.)

Signpost: real systems train a subword tokenizer on terabytes of web text. Characters and a toy
grammar keep the vocabulary tiny (about 30 symbols) so the whole policy pretrains in seconds on a
laptop CPU, and nothing of the RL lesson depends on how text is cut into tokens.
"""
import random
from dataclasses import dataclass

import torch

SUBJECTS = ["the " + s for s in "food staff room hotel movie music coffee service".split()]
SUBJECTS += ["this " + s for s in "book place game city".split()]
VERBS = ["is", "was", "seems", "looks", "felt"]
ADVERBS = ["very", "really", "quite", "so"]
POSITIVE = ["good", "great", "lovely", "fun", "excellent", "amazing", "nice", "perfect"]
NEGATIVE = ["bad", "awful", "boring", "terrible", "poor", "rude", "dull", "noisy"]
NEUTRAL = ["fine", "okay", "new", "small", "quiet", "busy", "old", "simple"]
ADJECTIVES = POSITIVE + NEGATIVE + NEUTRAL
CONJUNCTIONS = ["and", "but"]


def make_sentence(rng: random.Random) -> str:
    """sentence := clause [conj (clause | [adverb] adjective)] "."   clause := subject verb [adverb] adjective"""
    def adjective_phrase():
        adverb = [rng.choice(ADVERBS)] if rng.random() < 0.3 else []
        return adverb + [rng.choice(ADJECTIVES)]

    words = [rng.choice(SUBJECTS), rng.choice(VERBS)] + adjective_phrase()
    if rng.random() < 0.5:                                  # optional second clause
        words.append(rng.choice(CONJUNCTIONS))
        if rng.random() < 0.5:
            words += [rng.choice(SUBJECTS), rng.choice(VERBS)]
        words += adjective_phrase()
    return " ".join(words) + "."


def make_corpus(n_lines: int, seed: int) -> list[str]:
    """n_lines sentences; the same seed always gives the same corpus."""
    rng = random.Random(seed)
    return [make_sentence(rng) for _ in range(n_lines)]


def make_prompts(lines: list[str], n_words: int = 2) -> list[str]:
    """The queries x: the distinct first `n_words` words of the corpus lines, in first-seen order."""
    prompts = [" ".join(line.split()[:n_words]) for line in lines if len(line.split()) > n_words]
    return list(dict.fromkeys(p for p in prompts if p))


# ----------------------------------------------------------------------------- tokenizer
EOS = "\n"      # ends every response; the newline that ends the previous line also starts the next


@dataclass(frozen=True)
class Vocab:
    """The corpus's characters (always including EOS) have ids 0 .. size-1, the characters the model
    predicts; PAD = size is an input-only id for padding, never in text and never predicted."""
    chars: str

    @classmethod
    def from_text(cls, text: str) -> "Vocab":
        return cls("".join(sorted(set(text) | {EOS})))

    size = pad_id = property(lambda self: len(self.chars))
    eos_id = property(lambda self: self.chars.index(EOS))

    def encode(self, text: str) -> list[int]:
        for position, ch in enumerate(text):
            if ch not in self.chars:
                raise ValueError(f"character {ch!r} (at position {position} of {text[:40]!r}) "
                                 f"is not in the vocabulary {self.chars!r}")
        return [self.chars.index(ch) for ch in text]

    def decode(self, ids) -> str:
        return "".join(self.chars[i] for i in ids if i < len(self.chars))


def prepare(lines: list[str], prompts: list[str] = ()):
    """Corpus lines -> (vocab, train ids, held-out ids, prompts). The text is one stream of
    characters, a line per sentence; the first 5% of the lines are held out for validation. The
    queries x are `prompts`, or the first two words of each corpus line."""
    vocab, n_val = Vocab.from_text("\n".join(lines)), max(1, len(lines) // 20)

    def ids(part):                                  # EOS first: every line starts after one
        return torch.tensor(vocab.encode("\n" + "\n".join(part) + "\n"))
    return vocab, ids(lines[n_val:]), ids(lines[:n_val]), list(prompts) or make_prompts(lines)
