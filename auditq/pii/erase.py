"""Erasure (GDPR art. 17): destroy a subject's data key; their rows and the seals stay."""

from __future__ import annotations

from auditq.pii import subject_of
from auditq.stores import Store


def erase_subject(store: Store, actor_id: str) -> bool:
    """Destroy the data key of ``actor_id``'s personal fields; False when there was none
    (an unknown subject, or erased already: repeating it changes nothing)."""
    return store.delete_pii_key(subject_of(actor_id))


ERASE_ACTION = "auditq.pii.erase"
SUBJECT = "subject"  # the erase event's target_type; its target_id is the actor id


def erase_event(erased_actor: str, **who: str) -> dict[str, str]:
    """The critical audit event of an erasure: who erased which subject, nothing erased."""
    return {
        "action": ERASE_ACTION,
        "category": "critical",
        "target_type": SUBJECT,
        "target_id": erased_actor,
        "outcome": "success",
        **who,
    }
