"""The train engine: compiled steps, sharding, multi-seed vmap, checkpoints."""
from stable_training.train.checkpoint import WorkdirConfigMismatch
from stable_training.train.loop import NonFiniteError, load_data, train_and_evaluate
from stable_training.train.sharding import batch_sharded, data_mesh, replicated
from stable_training.train.steps import (TrainState, cross_entropy, layer_grad_norms, layer_names,
                                         make_chunk_fn, make_eval_step, make_objective, make_train_step)

__all__ = ["NonFiniteError", "TrainState", "WorkdirConfigMismatch", "batch_sharded", "cross_entropy",
           "data_mesh", "layer_grad_norms", "layer_names", "load_data", "make_chunk_fn", "make_eval_step",
           "make_objective", "make_train_step", "replicated", "train_and_evaluate"]
