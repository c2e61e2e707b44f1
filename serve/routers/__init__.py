"""One APIRouter per resource; serve.app includes them all."""
from . import embeddings, health, metrics, models, predictions

__all__ = ["embeddings", "health", "metrics", "models", "predictions"]
