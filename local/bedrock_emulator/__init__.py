"""Local Amazon Bedrock Runtime emulator speaking the real wire protocol (Converse, ConverseStream, InvokeModel)."""

from __future__ import annotations

from .errors import BedrockError
from .models import MODELS, ModelSpec, resolve_model
from .server import EmulatorServer, RecordedRequest, start_emulator
from .tokens import IMAGE_TOKENS, count_tokens

__all__ = [
    "IMAGE_TOKENS",
    "MODELS",
    "BedrockError",
    "EmulatorServer",
    "ModelSpec",
    "RecordedRequest",
    "count_tokens",
    "resolve_model",
    "start_emulator",
]
