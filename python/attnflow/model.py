"""attnflow.model: transformer models on measures: layers, models, losses and gradients,
optimizers, fitting to tasks.

The C++ module attnflow_model (include/attnflow/model/model.hpp, layers.hpp, model_grad.hpp,
model_fit.hpp, model_tasks.hpp).
"""
from ._attnflow import (  # noqa: F401
    AttentionLayer, Example, FitOptions, FitRecord, FitResult, MlpLayer, Model, ModelSpec,
    Optimizer, OptimizerKind, OptimizerOptions, TaskData, TaskKind, TaskOptions, apply_layer,
    batch_loss_and_gradient, evaluate, evaluate_batch, fit_model, identity_loss,
    kModelFormatVersion, layer_kind, loss_and_gradient, make_task, mean_loss, merge_atoms,
    model_from_bytes, model_loss, model_to_bytes, parameter_count, parse_optimizer,
    parse_task_kind, push_forward, push_forward_batch, random_model, task_target, transport,
    zeros_like,
)

__all__ = ["AttentionLayer", "Example", "FitOptions", "FitRecord", "FitResult", "MlpLayer",
           "Model", "ModelSpec", "Optimizer", "OptimizerKind", "OptimizerOptions", "TaskData",
           "TaskKind", "TaskOptions", "apply_layer", "batch_loss_and_gradient", "evaluate",
           "evaluate_batch", "fit_model", "identity_loss", "kModelFormatVersion", "layer_kind",
           "loss_and_gradient", "make_task", "mean_loss", "merge_atoms", "model_from_bytes",
           "model_loss", "model_to_bytes", "parameter_count", "parse_optimizer",
           "parse_task_kind", "push_forward", "push_forward_batch", "random_model",
           "task_target", "transport", "zeros_like"]
