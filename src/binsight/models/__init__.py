"""Models: the architecture registry, ``BinCounter`` (backbone + head), heads and weight loading.

>>> from binsight.models import create_model
>>> model = create_model("tiny_cnn", num_classes=5, head="ordinal")
"""

from binsight.models.heads import OrdinalHead, SoftmaxHead, outputs_to_probs
from binsight.models.registry import BackboneSpec, BinCounter, create_model, list_models, register_model

__all__ = [
    "BackboneSpec",
    "BinCounter",
    "OrdinalHead",
    "SoftmaxHead",
    "create_model",
    "list_models",
    "outputs_to_probs",
    "register_model",
]
