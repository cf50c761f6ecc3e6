"""Erasure (GDPR art. 17): destroy a subject's data key; their rows and the seals stay."""

from __future__ import annotations

from auditq.pii import subject_of
from auditq.stores import Store


def erase_subject(store: Store, actor_id: str) -> bool:
    """Destroy the data key of ``actor_id``'s personal fields; False when there was none
    (an unknown subject, or erased already: repeating it changes nothing)."""
    return store.delete_pii_key(subject_of(actor_id))


ERASE_ACTION = "auditq.pii.erase"


def erase_event(actor_id: str, **who: str) -> dict[str, str]:
    """The critical audit event of an erasure: who erased which subject, nothing erased."""
    return {
        "action": ERASE_ACTION,
        "category": "critical",
        "target_type": "subject",
        "target_id": actor_id,
        "outcome": "success",
        **who,
    }
