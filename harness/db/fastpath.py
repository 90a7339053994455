"""Prebuilt statements run on the bare sqlite3 driver, their SQL still defined once in Core.

Why: through SQLAlchemy a boot-path statement costs ~45-55 us of CPU against ~10-15 us on the
bare driver (compiled-cache lookup, execution context, parameter and result processing, ``Row``
objects), and the cloud runs a dozen of them per boot on its event loop. The statements stay
SQLAlchemy Core: a statement marked with :func:`prebuilt` is compiled by SQLAlchemy's own
compiler once per dialect and parameter-key set into a :class:`Plan` (SQL text, where each
positional parameter comes from, the type processors SQLAlchemy would apply); executing it then
costs one ``cursor.execute`` plus those conversions.

What SQLAlchemy did on execution and the plan repeats: Python-side column defaults of an INSERT
(``default=0``, ``default=dict``) and ``onupdate`` of an UPDATE, bind processors (JSON encoding,
Boolean to 0/1), literal parameters embedded in the statement (``is_(False)``, ``+ 1``,
an ``IN`` of a fixed list, expanded when the plan is made), result processors (JSON decoding,
0/1 to bool), the result keys, and driver errors wrapped as :mod:`sqlalchemy.exc` errors
(``IntegrityError`` ...). Anything a plan cannot reproduce exactly (a statement not marked
prebuilt, executemany, a context-dependent default, connection or engine events, execution
options, an ``IN`` whose list comes from the parameters) runs through SQLAlchemy on the same
connection and in the same transaction, as before.

Transactions are the driver's, exactly as SQLAlchemy's pysqlite dialect left them: it emits no
``BEGIN`` itself, the sqlite3 module opens a transaction before the first INSERT/UPDATE/DELETE,
and the runner commits or rolls back the DB-API connection at the end of the operation.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping, Sequence, TypeVar

from sqlalchemy import exc
from sqlalchemy.engine import Connection, Dialect

S = TypeVar("S")

#: statements marked with :func:`prebuilt`, by identity (kept alive here, so an id is never reused)
_PREBUILT: dict[int, Any] = {}


def prebuilt(stmt: S) -> S:
    """Mark a statement built once and executed many times as eligible for the bare-driver path.

    Only long-lived statements belong here (module constants, a bounded cache of variants): a
    plan is made per statement object, so a statement built per call would be compiled per call.
    Values that change per call must be ``bindparam``s given at execution.
    """
    _PREBUILT[id(stmt)] = stmt
    return stmt


def is_prebuilt(stmt: Any) -> bool:
    return id(stmt) in _PREBUILT


# -- plans -----------------------------------------------------------------------------------------

_FROM_PARAMS, _CONSTANT, _CALL = 0, 1, 2


@dataclass(frozen=True, slots=True)
class Plan:
    """One statement compiled for one dialect and one set of parameter keys."""

    sql: str
    #: per positional ``?``: (source kind, parameter key / constant / zero-arg callable, processor)
    binds: tuple[tuple[int, Any, Callable[[Any], Any] | None], ...]
    #: result keys (None for a statement without rows)
    keys: tuple[str, ...] | None
    #: (column index, result processor) for the columns SQLAlchemy converts
    result_procs: tuple[tuple[int, Callable[[Any], Any]], ...]
    row_class: type | None
    #: the same processors by result key (for rows read as mappings)
    named_procs: tuple[tuple[str, Callable[[Any], Any]], ...] = ()

    def arguments(self, params: Mapping[str, Any] | None) -> tuple:
        out = []
        for kind, src, proc in self.binds:
            if kind == _FROM_PARAMS:
                value = params[src]  # type: ignore[index]  # keys were checked when the plan was made
            elif kind == _CONSTANT:
                out.append(src)  # processed when the plan was made
                continue
            else:
                value = src()
            out.append(value if proc is None else proc(value))
        return tuple(out)


class Unsupported(Exception):
    """The statement needs something a plan does not reproduce: SQLAlchemy runs it."""


def make_plan(stmt: Any, params: Mapping[str, Any] | None, dialect: Dialect) -> Plan:
    """Compile ``stmt`` as SQLAlchemy would for these parameter keys (``column_keys`` sorted, as
    ``Connection.execute`` passes them) and record where every positional parameter comes from."""
    if stmt._execution_options:
        raise Unsupported("execution options")
    params = dict(params or {})
    keys = sorted(params)
    compiled: Any = stmt.compile(dialect=dialect, column_keys=keys)
    if not compiled.positional or compiled.returning or compiled.escaped_bind_names:
        raise Unsupported("named parameters, RETURNING or escaped bind names")

    # Python-side defaults SQLAlchemy would compute at execution (INSERT defaults, UPDATE onupdate)
    per_call: dict[str, Callable[[], Any]] = {}
    for col in compiled.insert_prefetch:
        per_call[col.key] = _default_getter(col.default)
    for col in compiled.update_prefetch:
        per_call[col.key] = _default_getter(col.onupdate)
    sample = dict(params)
    for name, getter in per_call.items():
        sample[name] = getter()
    # SQLAlchemy's own resolution of every bind (literal values, required ones present or an error)
    resolved = compiled.construct_params(sample, escape_names=False)

    from_params: dict[str, str] = {}
    for name in compiled.positiontup:
        bp = compiled.binds.get(name)
        if bp is None:
            raise Unsupported(f"bind {name!r} without a parameter object")
        if name in per_call:
            continue
        if bp.key in params:
            from_params[name] = bp.key
        elif name in params:
            from_params[name] = name
        elif bp.callable is not None:
            raise Unsupported(f"bind {name!r} has a callable value")

    sql, names, values, processors = compiled.string, list(compiled.positiontup), resolved, compiled._bind_processors
    if compiled.post_compile_params:
        if any(bp.key in params for bp in compiled.post_compile_params):
            raise Unsupported("an expanding parameter given at execution")
        expanded = compiled._process_parameters_for_postcompile(resolved)
        sql, names, values = expanded.statement, list(expanded.positiontup), expanded.parameters
        processors = {**processors, **expanded.processors}
    if compiled.literal_execute_params:
        raise Unsupported("literal_execute parameters")

    binds: list[tuple[int, Any, Callable[[Any], Any] | None]] = []
    for name in names:
        proc = processors.get(name)
        if name in from_params:
            binds.append((_FROM_PARAMS, from_params[name], proc))
        elif name in per_call:
            binds.append((_CALL, per_call[name], proc))
        else:
            value = values[name]
            binds.append((_CONSTANT, value if proc is None else proc(value), None))

    keys_out: tuple[str, ...] | None = None
    result_procs: list[tuple[int, Callable[[Any], Any]]] = []
    row_class: type | None = None
    if compiled._result_columns:
        keys_out = tuple(rc.keyname for rc in compiled._result_columns)
        if len(set(keys_out)) != len(keys_out):
            raise Unsupported("duplicate result keys")
        for i, rc in enumerate(compiled._result_columns):
            proc = rc.type._cached_result_processor(dialect, None)
            if proc is not None:
                result_procs.append((i, proc))
        row_class = _row_class(keys_out)
    named = tuple((keys_out[i], proc) for i, proc in result_procs) if keys_out else ()
    return Plan(sql, tuple(binds), keys_out, tuple(result_procs), row_class, named)


def _default_getter(default: Any) -> Callable[[], Any]:
    if default is None:
        raise Unsupported("prefetch column without a default")
    if default.is_scalar:
        value = default.arg
        return lambda: value
    if default.is_callable:
        zero_arg = getattr(default.arg, "__wrapped__", None)  # SQLAlchemy wraps fn() as fn(ctx)
        if zero_arg is None:
            raise Unsupported("a default that takes the execution context")
        return zero_arg
    raise Unsupported("a SQL expression or sequence default")


def _row_class(keys: tuple[str, ...]) -> type:
    base = collections.namedtuple("Row", keys, rename=True)  # type: ignore[misc]

    class Row(base):  # type: ignore[valid-type,misc]
        """A result row: attribute and index access and unpacking, as SQLAlchemy's ``Row``."""

        __slots__ = ()
        _keys = keys

        @property
        def _mapping(self) -> dict[str, Any]:
            return dict(zip(self._keys, self))

    return Row


# -- results ---------------------------------------------------------------------------------------

class FastResult:
    """The part of SQLAlchemy's ``CursorResult`` the query functions use, over fetched rows.

    Rows are the driver's tuples until read; the result processors run as they are read (per
    row, or per column for :meth:`columns`)."""

    __slots__ = ("_rows", "_plan", "rowcount")

    def __init__(self, rows: list[tuple] | None, plan: Plan, rowcount: int) -> None:
        self._rows = rows
        self._plan = plan
        self.rowcount = rowcount

    def _raw(self) -> list[tuple]:
        if self._rows is None:
            raise exc.ResourceClosedError("This result object does not return rows.")
        rows, self._rows = self._rows, []  # a result is read once, as a cursor is
        return rows

    def _fetched(self) -> list[Any]:
        rows = self._raw()
        procs = self._plan.result_procs
        if not procs or not rows:
            return rows
        out = []
        for r in rows:
            row = list(r)
            for i, proc in procs:
                row[i] = proc(row[i])
            out.append(row)
        return out

    def columns(self) -> dict[str, tuple]:
        """``{key: (value per row, ...)}``: what ``zip(*result.all())`` gives, without row objects
        (a thousand compute nodes are read this way per scheduling request)."""
        keys = self._plan.keys
        if keys is None:
            raise exc.ResourceClosedError("This result object does not return rows.")
        rows = self._raw()
        if not rows:
            return {k: () for k in keys}
        cols = list(zip(*rows))
        for i, proc in self._plan.result_procs:
            cols[i] = tuple(map(proc, cols[i]))
        return dict(zip(keys, cols))

    def keys(self) -> list[str]:
        if self._plan.keys is None:
            raise exc.ResourceClosedError("This result object does not return rows.")
        return list(self._plan.keys)

    def all(self) -> list[Any]:
        make = self._plan.row_class._make  # type: ignore[union-attr]
        return [make(r) for r in self._fetched()]

    def __iter__(self) -> Iterator[Any]:
        return iter(self.all())

    def first(self) -> Any:
        rows = self._fetched()
        return self._plan.row_class._make(rows[0]) if rows else None  # type: ignore[union-attr]

    def one_or_none(self) -> Any:
        rows = self._fetched()
        if len(rows) > 1:
            raise exc.MultipleResultsFound("Multiple rows were found when one or none was required")
        return self._plan.row_class._make(rows[0]) if rows else None  # type: ignore[union-attr]

    def one(self) -> Any:
        row = self.one_or_none()
        if row is None:
            raise exc.NoResultFound("No row was found when one was required")
        return row

    def scalar(self) -> Any:
        rows = self._fetched()
        return rows[0][0] if rows else None

    def scalar_one(self) -> Any:
        return self.one()[0]

    def scalar_one_or_none(self) -> Any:
        row = self.one_or_none()
        return None if row is None else row[0]

    def scalars(self) -> "_Values":
        return _Values([r[0] for r in self._fetched()])

    def mappings(self) -> "_Values":
        """Rows as plain dicts (SQLAlchemy's ``RowMapping``s, which the callers copy into dicts)."""
        keys = self._plan.keys
        rows = [dict(zip(keys, r)) for r in self._raw()]  # type: ignore[arg-type]
        named = self._plan.named_procs
        if named:
            for row in rows:
                for key, proc in named:
                    row[key] = proc(row[key])
        return _Values(rows)


class _Values:
    """``ScalarResult`` / ``MappingResult`` stand-in: iterate, ``all``, ``first``, ``one``."""

    __slots__ = ("_items",)

    def __init__(self, items: list[Any]) -> None:
        self._items = items

    def __iter__(self) -> Iterator[Any]:
        return iter(self._items)

    def all(self) -> list[Any]:
        return self._items

    def first(self) -> Any:
        return self._items[0] if self._items else None

    def one_or_none(self) -> Any:
        if len(self._items) > 1:
            raise exc.MultipleResultsFound("Multiple rows were found when one or none was required")
        return self._items[0] if self._items else None

    def one(self) -> Any:
        if len(self._items) != 1:
            if not self._items:
                raise exc.NoResultFound("No row was found when one was required")
            raise exc.MultipleResultsFound("Multiple rows were found when exactly one was required")
        return self._items[0]


# -- execution -------------------------------------------------------------------------------------

class PlanCache:
    """Plans for one dialect, by (statement identity, parameter keys); shared by connections and
    threads (a plan is immutable; two threads making the same plan at once both get a valid one)."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self._plans: dict[tuple, Plan | None] = {}

    def get(self, stmt: Any, params: Mapping[str, Any] | None) -> Plan | None:
        key = (id(stmt), tuple(params) if params else ())
        try:
            return self._plans[key]
        except KeyError:
            pass
        try:
            plan: Plan | None = make_plan(stmt, params, self.dialect)
        except Unsupported:
            plan = None
        self._plans[key] = plan
        return plan


class FastConnection:
    """What a query function receives: ``execute`` runs prebuilt statements on the DB-API cursor,
    anything else on the SQLAlchemy connection (same DB-API connection, same transaction)."""

    __slots__ = ("sa", "_cursor", "_plans", "_wrap_base")

    def __init__(self, sa: Connection, plans: PlanCache, cursor: Any) -> None:
        self.sa = sa
        self._plans = plans
        self._cursor = cursor
        self._wrap_base = plans.dialect.loaded_dbapi.Error

    @property
    def dialect(self) -> Dialect:
        return self.sa.dialect

    def execute(self, stmt: Any, params: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None) -> Any:
        if id(stmt) in _PREBUILT and (params is None or type(params) is dict or isinstance(params, Mapping)):
            plan = self._plans.get(stmt, params)
            if plan is not None:
                return self._run(plan, params)
        return self.sa.execute(stmt, params)

    def _run(self, plan: Plan, params: Mapping[str, Any] | None) -> FastResult:
        args = plan.arguments(params)
        cur = self._cursor
        try:
            cur.execute(plan.sql, args)
            if plan.keys is None:
                return FastResult(None, plan, cur.rowcount)
            rows = cur.fetchall()
        except self._wrap_base as e:
            raise wrap_error(plan.sql, args, e, self.sa.dialect) from e
        return FastResult(rows, plan, cur.rowcount)

    def __getattr__(self, name: str) -> Any:  # scalar(), scalars(), DDL visitors ...: SQLAlchemy's
        return getattr(self.sa, name)


def wrap_error(sql: str | None, args: Any, err: Exception, dialect: Dialect) -> BaseException:
    """The :mod:`sqlalchemy.exc` error SQLAlchemy raises for this driver error."""
    return exc.DBAPIError.instance(sql, args, err, dialect.loaded_dbapi.Error, dialect=dialect,
                                   ismulti=False)


def events_attached(conn: Connection) -> bool:
    """Connection or engine events (before/after_cursor_execute, instrumentation) see every
    statement only when SQLAlchemy runs it."""
    return bool(conn._has_events or conn.engine._has_events)
