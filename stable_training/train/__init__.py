"""The train engine: trainers, compiled steps, sharding, multi-seed vmap, checkpoints."""
from stable_training.train.checkpoint import WorkdirConfigMismatch
from stable_training.train.loop import NonFiniteError, build, init_state, load_data, train_and_evaluate
from stable_training.train.fit import fit
from stable_training.train.losses import get_loss
from stable_training.train.sharding import batch_sharded, data_mesh, replicated
from stable_training.train.steps import (TrainState, cross_entropy, layer_grad_norms, layer_names,
                                         make_chunk_fn, make_eval_step, make_objective, make_train_step)
from stable_training.train.trainers import get_trainer, names as trainer_names, run

__all__ = ["NonFiniteError", "fit", "TrainState", "WorkdirConfigMismatch", "batch_sharded", "build", "cross_entropy",
           "data_mesh", "get_loss", "get_trainer", "init_state", "layer_grad_norms", "layer_names", "load_data",
           "make_chunk_fn", "make_eval_step", "make_objective", "make_train_step", "replicated", "run",
           "train_and_evaluate", "trainer_names"]
