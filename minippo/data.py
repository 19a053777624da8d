"""The built-in corpus, its grammar, the prompts x and a character-level tokenizer.

Nothing is downloaded: a small seeded grammar writes short review sentences such as
    "the food was very good but the staff is rude."
one per line. `is_grammatical` decides exactly whether a line belongs to that grammar; it is how
minippo measures fluency, because reward hacking breaks grammar long before it breaks the reward.

Signpost: real systems train a subword tokenizer on terabytes of web text. Characters and a toy
grammar keep the vocabulary tiny (about 30 symbols) so the whole policy pretrains in seconds on a
laptop CPU, and nothing of the RL lesson depends on how text is cut into tokens.
"""
import random
from dataclasses import dataclass

SUBJECTS = ["the food", "the staff", "the room", "the hotel", "the movie", "the music",
            "the coffee", "the service", "this book", "this place", "this game", "this city"]
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
    if i < 0 or i == len(words):
        return i == len(words)
    if words[i] not in CONJUNCTIONS:
        return False
    j = subject_verb(i + 1)
    return adjective_phrase(j if j >= 0 else i + 1) == len(words)


def make_prompts(lines: list[str], n_words: int = 2) -> list[str]:
    """The queries x: the distinct first `n_words` words of the corpus lines, in first-seen order."""
    prompts = [" ".join(line.split()[:n_words]) for line in lines if len(line.split()) > n_words]
    return list(dict.fromkeys(p for p in prompts if p))


# ----------------------------------------------------------------------------- tokenizer
EOS = "\n"      # ends every response; the newline that ends the previous line also starts the next


@dataclass(frozen=True)
class Vocab:
    """Characters of the corpus (always including EOS); the padding token PAD gets the next id."""
    chars: str

    @classmethod
    def from_text(cls, text: str) -> "Vocab":
        return cls("".join(sorted(set(text) | {EOS})))

    @property
    def size(self) -> int:
        return len(self.chars)              # tokens the model can predict (PAD is not one)

    @property
    def pad_id(self) -> int:
        return len(self.chars)              # PAD is not EOS and never appears in text

    @property
    def eos_id(self) -> int:
        return self.chars.index(EOS)

    def encode(self, text: str) -> list[int]:
        ids = []
        for position, ch in enumerate(text):
            i = self.chars.find(ch)
            if i < 0:
                raise ValueError(f"character {ch!r} (at position {position} of {text[:40]!r}) "
                                 f"is not in the vocabulary {self.chars!r}")
            ids.append(i)
        return ids

    def decode(self, ids) -> str:
        return "".join(self.chars[i] for i in ids if i < len(self.chars))
