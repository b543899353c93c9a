"""Model registry: simple_cnn, resnet_fast, and any timm architecture as timm/<arch>.

The registry's functions are loaded on first use (PEP 562): importing a torch-free module of this
package (models.arrays, for a prediction in ONNX Runtime) must not import torch with the registry."""

__all__ = ["create_model", "list_models", "model_defaults", "register"]

# The head-only models' architecture names in model.json (models.headonly). Here, torch-free, so that
# what asks which kind a run is (a scan refusing the person detector's run) need not load torch.
FACE_EMBEDDING = "face_embedding"
TEXTURE = "texture_lbp"
PERSON_DETECTOR = "person_detector"
HEAD_ONLY = (FACE_EMBEDDING, TEXTURE, PERSON_DETECTOR)


def __getattr__(name: str):
    if name in __all__:
        from imgclf.models import factory

        return getattr(factory, name)
    raise AttributeError(f"module 'imgclf.models' has no attribute {name!r}")
