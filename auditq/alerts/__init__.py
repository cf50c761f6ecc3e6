"""Alerting: rules over auditq's own metrics, notified to Slack, PagerDuty, webhooks, email.

- ``metrics``: the values rules watch, read from Redis (bounded reads).
- ``rules``: the pure state machine (normal -> pending -> firing -> recovering -> normal).
- ``models``: validation shared by the dashboard's forms and the JSON API.
- ``repo``: the alert tables in the store (postgres via psycopg, supabase via PostgREST).
- ``notifiers`` and ``outbox``: payloads in each channel's real format, sent with retries.
- ``evaluator``: the periodic run under a Redis lease, in web and worker processes.
- ``service``: what the pages and the API do (CRUD, test notifications, silences, history).
"""
