"""Alerting: rules over auditq's own metrics and the log's content, notified to Slack,
PagerDuty, webhooks, email.

- ``metrics``: the values rules watch, read from Redis (bounded reads), ``redis_up`` too.
- ``content``: rules on the audit log itself (one event, a rate per source) and seal heads.
- ``rules``: the pure state machine (normal -> pending -> firing -> recovering -> normal).
- ``models``: rule validation shared by the dashboard's forms and the JSON API.
- ``channels``: the channel registry (kind -> config schema, secrets, label, form, sender).
- ``tables`` and ``repo``: the alert tables in the store (postgres via psycopg, supabase via
  PostgREST), behind one interface.
- ``messages``: what a notification says, and its outbox row.
- ``notifiers``, ``egress`` and ``outbox``: payloads in each channel's real format, sent
  only to allowed destinations, with retries.
- ``lease`` and ``memory``: who evaluates, and what it keeps so that it alerts while the
  store or Redis is down.
- ``evaluator``: the periodic run, in web and worker processes.
- ``service``: what the pages and the API do (CRUD, test notifications, silences, history).
"""
