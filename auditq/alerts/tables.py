"""The alert tables in the store (supabase/migrations/*_alerts.sql, *_alert_lease.sql).

Every module that names one imports it from here; ``repo`` refuses any other table name.
"""

from __future__ import annotations

CHANNELS = "alert_channels"
RULES = "alert_rules"
STATES = "alert_rule_state"
SILENCES = "alert_silences"
OUTBOX = "alert_outbox"
HISTORY = "alert_history"
META = "alert_meta"

TABLES = frozenset({CHANNELS, RULES, STATES, SILENCES, OUTBOX, HISTORY, META})
