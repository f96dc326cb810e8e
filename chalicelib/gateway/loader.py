"""Importing LiteLLM: once, late, offline and with the collector paused."""

from __future__ import annotations

import os
import threading
from typing import Any


def load_litellm() -> Any:
    """Import LiteLLM once, offline (no prices, tokenizers or tables fetched) and quiet.

    The cyclic garbage collector is paused during the import: LiteLLM builds
    ~500,000 objects (thousands of pydantic models) and the collector would
    rescan them again and again, a quarter of the cold import (measured by
    bench/cold_start.py). ``gc.freeze()`` then moves them to the permanent
    generation, so later collections skip them too; they live as long as the
    process anyway.
    """
    import gc

    os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    # Nothing LiteLLM fetches on its own (a tokenizer from Hugging Face for a Llama or Cohere model,
    # Anthropic's beta-header table): its bundled copies or its fallbacks instead. A fetch on the
    # request path stalled a first call to an OpenAI-compatible Llama for 28 s where the internet
    # is out of reach (a VPC without NAT), and elsewhere cost a download per cold start.
    os.environ["LITELLM_OFFLINE_MODE"] = "true"
    collecting = gc.isenabled()
    gc.disable()
    try:
        import litellm
    finally:
        gc.freeze()
        if collecting:
            gc.enable()

    litellm.suppress_debug_info = True
    litellm.telemetry = False
    litellm.disable_hf_tokenizer_download = True
    # No per-chunk logging tasks on a thread pool: the gateway logs and bills each call itself.
    litellm.disable_streaming_logging = True
    defer_default_encoding(litellm)
    share_bundled_price_map()
    return litellm


def share_bundled_price_map() -> None:
    """Let LiteLLM's Bedrock flags read the bundled price file from the copy its other checks parsed.

    On every cold chat LiteLLM parsed its bundled price file (3.5 MB of JSON, ~30 ms and ~6 MB)
    twice besides ``litellm.model_cost``: once cached in ``litellm.utils`` (Anthropic-style
    capability checks) and once cached in ``litellm.llms.bedrock.common_utils`` (Converse's
    model flags). Both are the file's content, read and never changed, so the Bedrock one is
    given the ``litellm.utils`` one. Skipped unless LiteLLM still has both;
    ``tests/test_gateway.py`` fails when the two stop holding the same content.
    """
    import litellm.utils as utils
    from litellm.llms.bedrock import common_utils

    bundled = getattr(utils, "get_bundled_model_cost_map", None)
    if bundled is not None and hasattr(common_utils, "_get_local_model_cost_map"):
        common_utils._get_local_model_cost_map = bundled  # noqa: SLF001 - what its model flags call


class DeferredEncoding:
    """LiteLLM's default tokenizer (tiktoken ``cl100k_base``), loaded the first time something tokenizes.

    ``litellm.completion`` hands its default encoding to every provider's handler; loading
    it decodes 100,000 BPE ranks (~0.1 s of a cold answer) and the Bedrock Converse path
    never reads it: Bedrock reports the usage. Anything that does tokenize with it gets the
    real encoding's attributes, loaded once, through LiteLLM's own loader.
    """

    def __init__(self, load: Any) -> None:
        self._load = load
        self._encoding: Any = None
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._encoding is not None

    def __getattr__(self, name: str) -> Any:
        if self._encoding is None:
            with self._lock:
                if self._encoding is None:
                    self._encoding = self._load()
        return getattr(self._encoding, name)


def defer_default_encoding(litellm: Any) -> None:
    """Give LiteLLM a ``DeferredEncoding`` where it caches its default encoding (``litellm.main``).

    Skipped when the encoding is already loaded, or when LiteLLM no longer caches it there:
    ``tests/test_artifact.py`` then fails (the cold path loads tiktoken again), rather than
    the gateway breaking. ``litellm.main`` is where ``completion`` lives: every model call
    imports it anyway.
    """
    import litellm.main as main

    if getattr(main, "_encoding_cache", False) is not None:
        return
    from litellm._lazy_imports import get_default_encoding

    deferred = DeferredEncoding(get_default_encoding)
    main._encoding_cache = deferred  # what litellm.main._get_encoding() returns
    litellm.encoding = deferred  # what the providers' streaming handlers read
    _defer_cost_counting(deferred)


def _defer_cost_counting(deferred: DeferredEncoding) -> None:
    """Let LiteLLM's price of a stream's start count an empty completion without loading tiktoken.

    The gateway always calls Bedrock with a stream; ``litellm.completion`` prices a stream as it
    returns it by counting its (empty) completion with the default tokenizer, which it fetches
    from ``litellm.utils`` and ``litellm_core_utils.token_counter``, loading the encoding first
    (~0.2 s of every cold answer) to count nothing. Handing those two the deferred encoding
    keeps every count exact (the first text to count loads it); ``tests/test_artifact.py`` fails
    when a cold stream loads it again.
    """
    import litellm.utils as utils
    from litellm.litellm_core_utils import token_counter

    def default_encoding() -> DeferredEncoding:
        return deferred

    named = token_counter.get_encoding

    def encoding_named(name: str) -> Any:
        return deferred if name == "cl100k_base" else named(name)

    utils.get_default_encoding = default_encoding  # what select_tokenizer hands the counter
    token_counter.get_default_encoding = default_encoding
    token_counter.get_encoding = encoding_named  # what the counter encodes with
