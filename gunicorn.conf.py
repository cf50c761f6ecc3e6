"""Gunicorn settings for the web process (Procfile: ``web``), read at start-up.

Heroku sets PORT and WEB_CONCURRENCY; elsewhere the defaults below apply. Command-line
options override this file (``python -m auditq dev`` binds 127.0.0.1 that way).
"""

import os

from auditq.config import load_settings

bind = [f"0.0.0.0:{os.environ.get('PORT', '5000')}"]
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# Threads: htmx polls every couple of seconds from each open tab, and an export streams for
# as long as it takes; neither should hold a whole process.
worker_class = "gthread"
threads = 4

# Heroku's router gives up on a request after 30 s, so a worker silent for longer is stuck:
# kill and replace it. On SIGTERM Heroku waits 30 s before SIGKILL; finish within 25.
timeout = 30
graceful_timeout = 25
keepalive = 5

# Logs go to stdout/stderr, where Heroku (and `python -m auditq dev`) collect them.
accesslog = "-"
errorlog = "-"

# Gunicorn 25+ opens a control socket at $HOME/.gunicorn/gunicorn.ctl by default: a second
# instance on the same machine would take it over, and nothing here uses it.
control_socket_disable = True

# Forwarded headers: one setting, AUDITQ_TRUSTED_PROXIES (unset: 1 on Heroku, where the
# router is the only way to reach a dyno, else 0), decides here and in the app's ProxyFix.
# With a proxy, gunicorn believes X-Forwarded-Proto from it; without one it believes no
# peer, so a client reaching gunicorn directly cannot claim https.
forwarded_allow_ips = "*" if load_settings().proxy_hops else ""
