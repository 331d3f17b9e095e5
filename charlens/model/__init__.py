"""The charlens model: a small character-level transformer and its checkpoints."""
from charlens.model.transformer import PRESETS, CausalSelfAttention, ModelConfig, TransformerLM

__all__ = ["PRESETS", "CausalSelfAttention", "ModelConfig", "TransformerLM"]
