"""JSON for the store insert paths (auditq/stores/encoding.py)."""

import json
from decimal import Decimal

from auditq.stores.encoding import dumps


def test_what_orjson_refuses_still_goes_through_pydantic():
    value = {"big": 2**70, "tags": {"a"}, "amount": Decimal("1.5")}
    assert json.loads(dumps(value)) == {"big": 2**70, "tags": ["a"], "amount": "1.5"}
