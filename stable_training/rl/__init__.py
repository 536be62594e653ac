"""Reinforcement learning: pure-JAX CartPole envs and DQN with/without a target
network (Ramaswamy, Bhatnagar & Saxena 2023)."""
from stable_training.rl import envs  # noqa: F401
from stable_training.rl.dqn import default_config, make_train  # noqa: F401
