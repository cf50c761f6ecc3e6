"""``python -m worker``: the Procfile's worker process. Scale it by running more of them."""

from __future__ import annotations

import sys

from auditq.config import ConfigError, load_settings
from auditq.stores import open_store
from worker.app import Worker, configure_logging


def main() -> int:
    try:
        settings = load_settings()
    except ConfigError as error:
        print(f"worker: {error}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    store = open_store(settings, timeout=settings.store_timeout)
    if store is None:
        print("worker: no store configured (set SUPABASE_URL or DATABASE_URL)", file=sys.stderr)
        return 2
    return Worker(settings, store).run()


if __name__ == "__main__":
    sys.exit(main())
