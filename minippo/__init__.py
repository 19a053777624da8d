"""minippo: a minimal, from-scratch PPO for language models.
Start reading at minippo/model.py; the README gives the order."""
