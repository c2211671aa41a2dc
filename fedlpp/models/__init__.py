"""Base models + LoRA from config: ``tiny-llama``, ``smollm2-135m``, ``minilm``, ``hf:<path or id>``.

One file per model; each registers a loader in ``MODELS``. Third-party models register through the
``fedlpp.models`` entry-point group.
"""

from fedlpp.models.core import (
    MODELS,
    Loaded,
    Loader,
    ModelBundle,
    Task,
    base_linear_weight_names,
    linear_module_names,
    load_model,
    load_state,
    torch_dtype,
    trainable_state,
)

__all__ = [
    "MODELS",
    "Loaded",
    "Loader",
    "ModelBundle",
    "Task",
    "base_linear_weight_names",
    "linear_module_names",
    "load_model",
    "load_state",
    "torch_dtype",
    "trainable_state",
]
