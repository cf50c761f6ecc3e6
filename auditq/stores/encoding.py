"""JSON for the store insert paths: orjson, with pydantic's encoder for what orjson refuses.

orjson writes UUIDs and aware datetimes itself and is several times faster than the stdlib;
it refuses integers over 64 bits and types it does not know, which pydantic's encoder (the
one that wrote the event's own JSON) accepts, so those rare values still go through.
"""

from __future__ import annotations

from typing import Any

import orjson
import pydantic_core


def dumps(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        return pydantic_core.to_json(value)
