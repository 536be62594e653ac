"""Reinforcement learning: pure-JAX CartPole envs and DQN with/without a target
network (Ramaswamy, Bhatnagar & Saxena 2023); `stable_training.rl.trainer` is
the ``dqn`` trainer of `stable_training.train.trainers` (imported on use)."""
from stable_training.rl import envs  # noqa: F401
from stable_training.rl.dqn import (default_config, make_chunk, make_init,  # noqa: F401
                                    make_train)
