"""Model registry: simple_cnn, resnet_fast, and any timm architecture as timm/<arch>."""

from imgclf.models.factory import create_model, list_models, model_defaults, register

__all__ = ["create_model", "list_models", "model_defaults", "register"]
