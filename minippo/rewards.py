"""Hand-written reward functions r(x, y): plain Python on strings, nothing of torch.

Each takes the prompt x and the finished sentence's continuation y (without EOS) and returns a
float in [-1, 1]. Adding a reward is writing one function and naming it in REWARDS; then
`python train.py --reward NAME` uses it.

A response that never reaches EOS within --max-new-tokens is not scored by these functions: it gets
NO_EOS_PENALTY (-1, the worst score of every reward here), so "never stop talking" cannot pay.

Signpost: in RLHF, r(x, y) is a learned reward model, a transformer trained on preference pairs
(minippo/extras/reward_model.py, `train.py --reward-model`). A hand-written function is a perfect,
cheap one: the RL machinery that consumes its number is the same, and its flaws are easy to see.
"""
from minippo.data import NEGATIVE, POSITIVE

NO_EOS_PENALTY = -1.0
POSITIVE_WORDS, NEGATIVE_WORDS = set(POSITIVE), set(NEGATIVE)


def _words(prompt: str, response: str) -> list[str]:
    return (prompt + response).replace(".", " ").split()


def positive(prompt: str, response: str) -> float:
    """Sentiment: +1 if the sentence has more positive than negative words, -1 if fewer, else 0."""
    words = _words(prompt, response)
    n_pos = sum(w in POSITIVE_WORDS for w in words)
    n_neg = sum(w in NEGATIVE_WORDS for w in words)
    return float(n_pos > n_neg) - float(n_neg > n_pos)


def short(prompt: str, response: str, target: int = 12) -> float:
    """Length control: 1 for a sentence ending in "." with exactly `target` characters after the
    prompt, falling linearly to -1 at 12 characters off; -1 without the final period."""
    if not response.endswith("."):
        return -1.0
    return max(-1.0, 1.0 - abs(len(response) - target) / 6)


def mentions_staff(prompt: str, response: str, word: str = "staff") -> float:
    """Topic: 1 if the response talks about `word` (it must appear after the prompt), else 0.
    Unlike `positive`, most prompts need a second clause ("... but the staff was nice.") to score."""
    return float(word in response.replace(".", " ").split())


REWARDS = {"positive": positive, "short": short, "staff": mentions_staff}
