"""A small on-disk cache for expensive results (adversarial sets, sweeps), written atomically."""
from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from . import DATA_DIR
from .data import atomic_write_bytes

CACHE_DIR = DATA_DIR / "cache" / "results"


def cache_path(kind: str, **key: Any) -> Path:
    """The file for a result of `kind` whose parameters are `key` (a readable name plus a short hash)."""
    text = json.dumps(key, sort_keys=True, default=str)
    readable = "-".join(f"{v}" for v in key.values() if isinstance(v, (str, int)) and len(str(v)) < 24)
    safe = "".join(ch if ch.isalnum() or ch in "-_.@" else "_" for ch in readable)
    return CACHE_DIR / kind / f"{safe}-{hashlib.sha1(text.encode()).hexdigest()[:10]}.pt"


def cached(kind: str, compute: Callable[[], dict[str, Any]], **key: Any) -> dict[str, Any]:
    """Load the result for (kind, key) from disk, or compute it, save it atomically and return it."""
    path = cache_path(kind, **key)
    if path.exists():
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # noqa: BLE001 - an unreadable cache file is recomputed, not trusted
            path.unlink(missing_ok=True)
    result = compute()
    buffer = io.BytesIO()
    torch.save(result, buffer)
    atomic_write_bytes(path, buffer.getvalue())
    return result
