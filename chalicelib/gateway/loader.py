"""Importing LiteLLM: once, late, offline and with the collector paused."""

from __future__ import annotations

import os
from typing import Any


def load_litellm() -> Any:
    """Import LiteLLM once, offline and quiet.

    The cyclic garbage collector is paused during the import: LiteLLM builds
    ~500,000 objects (thousands of pydantic models) and the collector would
    rescan them again and again, a quarter of the cold import (measured by
    bench/cold_start.py). ``gc.freeze()`` then moves them to the permanent
    generation, so later collections skip them too; they live as long as the
    process anyway.
    """
    import gc

    os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
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
    # No per-chunk logging tasks on a thread pool: the gateway logs and bills each call itself.
    litellm.disable_streaming_logging = True
    return litellm
