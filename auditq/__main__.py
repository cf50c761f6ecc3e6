"""``python -m auditq <command>``: migrate (the release phase), dev (the embedded default), demo."""

from __future__ import annotations

import argparse
import logging
import sys

from auditq.config import ConfigError, load_settings
from auditq.devtools import demo, dev
from auditq.pii import cli as pii_cli
from auditq.retention import cli as retention_cli
from auditq.seals import cli as seals_cli


def _migrate(_args: argparse.Namespace) -> int:
    from auditq.migrate import apply_migrations

    settings = load_settings()
    if settings.database_url is None:
        print(
            "auditq migrate: DATABASE_URL is not set (use the Supabase connection string)",
            file=sys.stderr,
        )
        return 2
    applied = apply_migrations(settings.database_url.get_secret_value())
    print(f"applied {len(applied)} migration(s)" + (": " + ", ".join(applied) if applied else ""))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m auditq")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("migrate", help="apply supabase/migrations to DATABASE_URL").set_defaults(
        run=_migrate
    )
    dev_parser = commands.add_parser(
        "dev", help="run everything locally: Redis, Postgres, web, worker (nothing to configure)"
    )
    dev.add_arguments(dev_parser)
    dev_parser.set_defaults(run=dev.main)
    demo_parser = commands.add_parser("demo", help="send demo audit traffic through REDIS_URL")
    demo.add_arguments(demo_parser)
    demo_parser.set_defaults(run=demo.main)
    seals_cli.add_commands(commands)
    retention_cli.add_commands(commands)
    pii_cli.add_commands(commands)  # erase (auditq/pii)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        return args.run(args)
    except ConfigError as error:
        print(f"auditq: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
