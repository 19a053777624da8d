"""minippo: a minimal, from-scratch PPO for language models. Start reading at train.py."""
