"""One APIRouter per resource; serve.app includes them all."""
from . import cards, embeddings, health, metrics, models, neighbours, page, predictions, search, v2

__all__ = ["cards", "embeddings", "health", "metrics", "models", "neighbours", "page",
           "predictions", "search", "v2"]
