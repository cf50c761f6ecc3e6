"""The drain process (``python -m worker``): moves audit events from the Redis stream into
the store, adapting its batch size, retrying outages, isolating poison events and
reclaiming what dead workers held. Others read its heartbeat through ``auditq.heartbeat``.
"""
