"""The alert tables in the store, behind one small repository interface with two implementations.

``PostgresRepo`` speaks SQL through psycopg (the ``postgres`` store), ``SupabaseRepo`` uses
supabase-py's query builder through PostgREST (the ``supabase`` store). The alert engine,
the pages and the API only ever see ``Repo``, so there is one code path above it, and one
contract test runs against both.

Rows go in and come out as plain dicts of JSON-like values. By convention every time column
ends in ``_at``; at this boundary such a value is a float (unix seconds), whatever the
driver speaks (psycopg: ``datetime``; PostgREST: RFC 3339 text). UUIDs are strings.

Filters are ``(column, op, value)`` triples, op one of ``eq neq lt lte gt gte in``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx
import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from auditq.alerts.tables import TABLES
from auditq.config import Settings
from auditq.stores import DataRejected, StoreError, StoreUnavailable
from auditq.stores.postgres import SharedConnection, classify

Row = dict[str, Any]
Where = Sequence[tuple[str, str, Any]]

_OPS = {"eq": "=", "neq": "<>", "lt": "<", "lte": "<=", "gt": ">", "gte": ">="}


class Conflict(DataRejected):
    """A unique constraint refused the row (a name already in use)."""


class Repo(Protocol):
    def list(
        self,
        table: str,
        where: Where = (),
        *,
        order: str | None = None,
        desc: bool = False,
        limit: int | None = None,
    ) -> list[Row]: ...

    def get(self, table: str, id: str, *, key: str = "id") -> Row | None: ...

    def insert(self, table: str, row: Mapping[str, Any]) -> Row: ...

    def insert_ignore(self, table: str, rows: Sequence[Mapping[str, Any]], on_conflict: str) -> int:
        """Insert the rows that do not clash on ``on_conflict``; return how many were new."""

    def upsert(self, table: str, row: Mapping[str, Any], on_conflict: str) -> Row: ...

    def update(
        self, table: str, id: str, changes: Mapping[str, Any], *, key: str = "id"
    ) -> Row | None: ...

    def delete(self, table: str, id: str, *, key: str = "id") -> bool: ...

    def delete_where(self, table: str, where: Where) -> int:
        """Delete the rows matching every filter (at least one); return how many."""

    def take_lease(self, name: str, holder: str, ttl: float) -> bool:
        """Take or renew the lease ``name`` for ``ttl`` seconds; False if another holds it."""

    def release_lease(self, name: str, holder: str) -> None: ...

    def call(self, function: str, params: Mapping[str, Any]) -> Any:
        """The value of SQL function ``public.<function>`` called with named ``params``
        (JSON-like values); the same call over psycopg and PostgREST's rpc."""

    def close(self) -> None: ...


def open_repo(settings: Settings) -> Repo | None:
    """The repository on the store the settings name, or None when none is configured.
    Each request is bounded by AUDITQ_STORE_TIMEOUT."""
    timeout = settings.store_timeout
    if settings.store_kind == "supabase":
        from auditq.stores.supabase import SupabaseStore

        assert settings.supabase_url and settings.supabase_service_role_key
        store = SupabaseStore(
            settings.supabase_url,
            settings.supabase_service_role_key.get_secret_value(),
            timeout=timeout,
        )
        return SupabaseRepo(store.client)
    if settings.store_kind == "postgres":
        assert settings.database_url
        return PostgresRepo(settings.database_url.get_secret_value(), timeout=timeout)
    return None


def new_id() -> str:
    return str(uuid.uuid4())


def valid_id(value: str) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


# --- value conversion at the boundary ---------------------------------------------------------


def _is_time(column: str) -> bool:
    return column.endswith("_at")


def _to_datetime(value: Any) -> Any:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC)
    return value


def _from_db(row: Mapping[str, Any]) -> Row:
    out: Row = {}
    for column, value in row.items():
        if isinstance(value, datetime):
            value = value.timestamp()
        elif isinstance(value, str) and _is_time(column):
            value = datetime.fromisoformat(value).timestamp()
        elif isinstance(value, uuid.UUID):
            value = str(value)
        out[column] = value
    return out


def _check_table(table: str) -> None:
    if table not in TABLES:
        raise ValueError(f"not an alert table: {table}")


# --- postgres -----------------------------------------------------------------------------


class PostgresRepo:
    def __init__(self, dsn: str, timeout: float = 10.0):
        self._db = SharedConnection(
            dsn, timeout, "auditq-alerts", autocommit=True, row_factory=dict_row
        )

    def _run(self, query: sql.SQL | sql.Composed, params: Sequence[Any] = ()) -> list[Row]:
        try:
            with self._db.use() as conn:
                cur = conn.cursor(row_factory=dict_row).execute(query, params)
                rows = cur.fetchall() if cur.description else []
                return [_from_db(r) for r in rows]
        except psycopg.Error as error:
            raise _pg_error(error) from error

    @staticmethod
    def _value(column: str, value: Any) -> Any:
        if isinstance(value, dict | list):
            return Jsonb(value)
        return _to_datetime(value) if _is_time(column) else value

    def _where(self, where: Where) -> tuple[sql.Composable, list[Any]]:
        if not where:
            return sql.SQL(""), []
        parts, params = [], []
        for column, op, value in where:
            if op == "in":
                parts.append(sql.SQL("{} = any(%s)").format(sql.Identifier(column)))
                params.append([self._value(column, v) for v in value])
            elif value is None and op in ("eq", "neq"):
                test = "is null" if op == "eq" else "is not null"
                parts.append(sql.SQL("{} " + test).format(sql.Identifier(column)))
            else:
                parts.append(sql.SQL("{} " + _OPS[op] + " %s").format(sql.Identifier(column)))
                params.append(self._value(column, value))
        return sql.SQL(" where ") + sql.SQL(" and ").join(parts), params

    def list(self, table, where=(), *, order=None, desc=False, limit=None):
        _check_table(table)
        clause, params = self._where(where)
        query = sql.SQL("select * from {}").format(sql.Identifier("public", table)) + clause
        if order:
            query += sql.SQL(" order by {} " + ("desc" if desc else "asc")).format(
                sql.Identifier(order)
            )
        if limit is not None:
            query += sql.SQL(" limit %s")
            params.append(int(limit))
        return self._run(query, params)

    def get(self, table, id, *, key="id"):
        rows = self.list(table, [(key, "eq", id)], limit=1)
        return rows[0] if rows else None

    def _insert_sql(self, table: str, rows: Sequence[Mapping[str, Any]]):
        columns = list(rows[0])
        values = sql.SQL(", ").join(
            sql.SQL("(") + sql.SQL(", ").join(sql.Placeholder() * len(columns)) + sql.SQL(")")
            for _ in rows
        )
        params = [self._value(c, row.get(c)) for row in rows for c in columns]
        query = sql.SQL("insert into {} ({}) values ").format(
            sql.Identifier("public", table), sql.SQL(", ").join(map(sql.Identifier, columns))
        )
        return query + values, params, columns

    def insert(self, table, row):
        _check_table(table)
        query, params, _ = self._insert_sql(table, [row])
        return self._run(query + sql.SQL(" returning *"), params)[0]

    def insert_ignore(self, table, rows, on_conflict):
        _check_table(table)
        if not rows:
            return 0
        query, params, _ = self._insert_sql(table, rows)
        query += sql.SQL(" on conflict ({}) do nothing returning 1").format(
            sql.Identifier(on_conflict)
        )
        return len(self._run(query, params))

    def upsert(self, table, row, on_conflict):
        _check_table(table)
        query, params, columns = self._insert_sql(table, [row])
        updates = [c for c in columns if c != on_conflict]
        query += sql.SQL(" on conflict ({}) do update set {} returning *").format(
            sql.Identifier(on_conflict),
            sql.SQL(", ").join(
                sql.SQL("{0} = excluded.{0}").format(sql.Identifier(c)) for c in updates
            ),
        )
        return self._run(query, params)[0]

    def update(self, table, id, changes, *, key="id"):
        _check_table(table)
        if not changes:
            return self.get(table, id, key=key)
        sets = sql.SQL(", ").join(sql.SQL("{} = %s").format(sql.Identifier(c)) for c in changes)
        params = [self._value(c, v) for c, v in changes.items()] + [id]
        query = sql.SQL("update {} set {} where {} = %s returning *").format(
            sql.Identifier("public", table), sets, sql.Identifier(key)
        )
        rows = self._run(query, params)
        return rows[0] if rows else None

    def delete(self, table, id, *, key="id"):
        _check_table(table)
        query = sql.SQL("delete from {} where {} = %s returning 1").format(
            sql.Identifier("public", table), sql.Identifier(key)
        )
        return bool(self._run(query, [id]))

    def delete_where(self, table, where):
        _check_table(table)
        if not where:
            raise ValueError("delete_where needs a filter")
        clause, params = self._where(where)
        query = sql.SQL("delete from {}").format(sql.Identifier("public", table)) + clause
        return len(self._run(query + sql.SQL(" returning 1"), params))

    def take_lease(self, name, holder, ttl):
        query = sql.SQL("select public.alert_take_lease(%s, %s, %s) as taken")
        return bool(self._run(query, [name, holder, float(ttl)])[0]["taken"])

    def release_lease(self, name, holder):
        self._run(sql.SQL("select public.alert_release_lease(%s, %s)"), [name, holder])

    def call(self, function, params):
        args = sql.SQL(", ").join(
            sql.SQL("{} => %s").format(sql.Identifier(name)) for name in params
        )
        query = sql.SQL("select public.{}({}) as value").format(sql.Identifier(function), args)
        values = [Jsonb(v) if isinstance(v, dict | list) else v for v in params.values()]
        return self._run(query, values)[0]["value"]

    def close(self):
        self._db.close()


def _pg_error(error: psycopg.Error) -> StoreError:
    if error.sqlstate == "23505":
        return Conflict("already exists")
    return classify(error)


# --- supabase -----------------------------------------------------------------------------


class SupabaseRepo:
    def __init__(self, client: Any):
        self.client = client

    @staticmethod
    def _value(column: str, value: Any) -> Any:
        value = _to_datetime(value) if _is_time(column) else value
        return value.isoformat() if isinstance(value, datetime) else value

    def _row(self, row: Mapping[str, Any]) -> Row:
        return {c: self._value(c, v) for c, v in row.items()}

    def _filter(self, query: Any, where: Where) -> Any:
        for column, op, value in where:
            if op == "in":
                query = query.in_(column, [self._value(column, v) for v in value])
            elif value is None and op in ("eq", "neq"):
                query = query.is_(column, "null") if op == "eq" else query.not_.is_(column, "null")
            else:
                query = getattr(query, op)(column, self._value(column, value))
        return query

    def list(self, table, where=(), *, order=None, desc=False, limit=None):
        _check_table(table)
        query = self._filter(self.client.table(table).select("*"), where)
        if order:
            query = query.order(order, desc=desc)
        if limit is not None:
            query = query.limit(int(limit))
        return [_from_db(r) for r in _execute(query).data]

    def get(self, table, id, *, key="id"):
        rows = self.list(table, [(key, "eq", id)], limit=1)
        return rows[0] if rows else None

    def insert(self, table, row):
        _check_table(table)
        return _from_db(_execute(self.client.table(table).insert(self._row(row))).data[0])

    def insert_ignore(self, table, rows, on_conflict):
        from postgrest import CountMethod, ReturnMethod

        _check_table(table)
        if not rows:
            return 0
        query = self.client.table(table).upsert(
            [self._row(r) for r in rows],
            on_conflict=on_conflict,
            ignore_duplicates=True,
            returning=ReturnMethod.minimal,
            count=CountMethod.exact,
            default_to_null=False,
        )
        return _execute(query).count or 0

    def upsert(self, table, row, on_conflict):
        _check_table(table)
        query = self.client.table(table).upsert(
            self._row(row), on_conflict=on_conflict, default_to_null=False
        )
        return _from_db(_execute(query).data[0])

    def update(self, table, id, changes, *, key="id"):
        _check_table(table)
        if not changes:
            return self.get(table, id, key=key)
        query = self.client.table(table).update(self._row(changes)).eq(key, id)
        data = _execute(query).data
        return _from_db(data[0]) if data else None

    def delete(self, table, id, *, key="id"):
        _check_table(table)
        return bool(_execute(self.client.table(table).delete().eq(key, id)).data)

    def delete_where(self, table, where):
        _check_table(table)
        if not where:
            raise ValueError("delete_where needs a filter")
        from postgrest import CountMethod, ReturnMethod

        query = self.client.table(table).delete(
            count=CountMethod.exact, returning=ReturnMethod.minimal
        )
        return _execute(self._filter(query, where)).count or 0

    def take_lease(self, name, holder, ttl):
        params = {"p_name": name, "p_holder": holder, "p_ttl": float(ttl)}
        return bool(_execute(self.client.rpc("alert_take_lease", params)).data)

    def release_lease(self, name, holder):
        _execute(self.client.rpc("alert_release_lease", {"p_name": name, "p_holder": holder}))

    def call(self, function, params):
        return _execute(self.client.rpc(function, dict(params))).data

    def close(self):
        self.client.postgrest.session.close()


def _execute(query: Any) -> Any:
    from postgrest import APIError

    from auditq.stores.supabase import classify

    try:
        return query.execute()
    except APIError as error:
        if str(error.code or "") == "23505":
            raise Conflict("already exists") from None
        raise classify(error) from None
    except httpx.HTTPError as error:
        raise StoreUnavailable(f"postgrest unreachable: {type(error).__name__}") from None


class FailFast:
    """A Repo that, once the store failed to answer, fails at once until ``reset()``.

    The evaluator resets it at the start of each run: a store that hangs then costs a run
    one timeout instead of one per query, so the run stays well inside its lease."""

    def __init__(self, repo: Repo):
        self.repo = repo
        self.down: StoreUnavailable | None = None

    def reset(self) -> None:
        self.down = None

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.repo, name)
        if name == "close":
            return method

        def guarded(*args: Any, **kwargs: Any) -> Any:
            if self.down is not None:
                raise self.down
            try:
                return method(*args, **kwargs)
            except StoreUnavailable as error:
                self.down = error
                raise

        return guarded


def rows_by(rows: Iterable[Row], key: str = "id") -> dict[str, Row]:
    return {row[key]: row for row in rows}
