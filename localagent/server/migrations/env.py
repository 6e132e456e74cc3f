"""Alembic's environment: run the revisions on the connection that ``schema.upgrade`` hands over.

The server never lets alembic open a connection of its own: ``localagent.server.migrations.schema`` begins
a transaction, takes the schema lock and passes that connection in ``config.attributes["connection"]``,
so every revision runs inside the locked transaction (PostgreSQL has transactional DDL).
"""

from __future__ import annotations

from alembic import context

from localagent.server.tables import metadata


def run_migrations_online() -> None:
    connection = context.config.attributes["connection"]
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite cannot ALTER most things in place; batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise RuntimeError("localagent runs its migrations online only (localagent server --upgrade-only)")
run_migrations_online()
