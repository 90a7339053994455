"""Nova's DB schema (the part the boot path touches), as SQLAlchemy Core tables.

Core rather than the ORM: every statement is visible and cheap, and the same metadata creates the
schema on SQLite and PostgreSQL.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

flavors = Table(
    "flavors",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("name", String(255), nullable=False, unique=True),
    Column("vcpus", Integer, nullable=False),
    Column("memory_mb", Integer, nullable=False),
    Column("root_gb", Integer, nullable=False),
    Column("ephemeral_gb", Integer, nullable=False, default=0),
    Column("swap", Integer, nullable=False, default=0),
    Column("is_public", Boolean, nullable=False, default=True),
)

instances = Table(
    "instances",
    metadata,
    Column("uuid", String(36), primary_key=True),
    Column("name", String(255), nullable=False),
    Column("project_id", String(64), nullable=False, index=True),
    Column("user_id", String(64), nullable=False),
    Column("flavor_id", String(36), nullable=False),
    Column("image_ref", String(36), nullable=False, default=""),
    Column("vcpus", Integer, nullable=False),
    Column("memory_mb", Integer, nullable=False),
    Column("root_gb", Integer, nullable=False),
    Column("vm_state", String(32), nullable=False),
    Column("task_state", String(32), nullable=True),
    Column("power_state", Integer, nullable=False, default=0),
    Column("host", String(255), nullable=True, index=True),
    Column("availability_zone", String(255), nullable=True),
    Column("requested_az", String(255), nullable=True),
    Column("fault_message", Text, nullable=True),
    Column("fault_code", Integer, nullable=True),
    Column("fault_details", Text, nullable=True),
    Column("request", JSON, nullable=False, default=dict),  # networks, bdm, key_name, metadata
    Column("addresses", JSON, nullable=False, default=dict),
    Column("attempts", Integer, nullable=False, default=0),
    Column("progress", Integer, nullable=False, default=0),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False, index=True),  # GET /servers?changes-since=
    Column("launched_at", Float, nullable=True),
    Column("deleted", Boolean, nullable=False, default=False, index=True),
)

compute_nodes = Table(
    "compute_nodes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("host", String(255), nullable=False, unique=True),
    Column("vcpus", Integer, nullable=False),
    Column("memory_mb", Integer, nullable=False),
    Column("local_gb", Integer, nullable=False),
    Column("vcpus_used", Integer, nullable=False, default=0),
    Column("memory_mb_used", Integer, nullable=False, default=0),
    Column("local_gb_used", Integer, nullable=False, default=0),
    Column("running_vms", Integer, nullable=False, default=0),
    Column("cpu_allocation_ratio", Float, nullable=False),
    Column("ram_allocation_ratio", Float, nullable=False),
    Column("disk_allocation_ratio", Float, nullable=False),
    Column("availability_zone", String(255), nullable=False),
    Column("arch", String(32), nullable=False),
    Column("disabled", Boolean, nullable=False, default=False),
    Column("failed_builds", Integer, nullable=False, default=0),
    # Bumped by every change of usage; a claim names the generation it read (as placement does).
    Column("generation", Integer, nullable=False, default=0),
)

#: Columns of ``compute_nodes`` the boot path never writes after a host registers (its name, size,
#: ratios, zone, arch); the rest change with every claim. See :mod:`harness.db.providers`.
NODE_STATIC_COLUMNS = ("host", "vcpus", "memory_mb", "local_gb", "cpu_allocation_ratio",
                       "ram_allocation_ratio", "disk_allocation_ratio", "availability_zone", "arch")

#: SQLite: a counter of changes to the registered hosts, bumped by triggers on every INSERT,
#: DELETE and UPDATE of a static column of ``compute_nodes`` (whoever makes it: the services, a
#: test, a hand edit), so the scheduler can tell its copy of those columns is still current
#: (:func:`harness.db.providers.node_columns`). A claim writes only usage columns: no trigger runs.
#: Its own metadata: created by :func:`harness.db.store.NovaDB.create_schema` on SQLite only.
sqlite_only = MetaData()
compute_nodes_static_version = Table(
    "compute_nodes_static_version",
    sqlite_only,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("n", Integer, nullable=False),
)
_BUMP = "BEGIN UPDATE compute_nodes_static_version SET n = n + 1 WHERE id = 1; END"
SQLITE_NODE_VERSION_DDL = (
    "INSERT OR IGNORE INTO compute_nodes_static_version (id, n) VALUES (1, 0)",
    f"CREATE TRIGGER IF NOT EXISTS compute_nodes_static_insert AFTER INSERT ON compute_nodes {_BUMP}",
    f"CREATE TRIGGER IF NOT EXISTS compute_nodes_static_delete AFTER DELETE ON compute_nodes {_BUMP}",
    "CREATE TRIGGER IF NOT EXISTS compute_nodes_static_update AFTER UPDATE OF "
    f"{', '.join(NODE_STATIC_COLUMNS)} ON compute_nodes {_BUMP}",
)

allocations = Table(
    "allocations",
    metadata,
    Column("instance_uuid", String(36), primary_key=True),
    Column("host", String(255), nullable=False, index=True),
    Column("vcpus", Integer, nullable=False),
    Column("memory_mb", Integer, nullable=False),
    Column("disk_gb", Integer, nullable=False),
    Column("created_at", Float, nullable=False),
    UniqueConstraint("instance_uuid", name="uq_allocation_instance"),
)
