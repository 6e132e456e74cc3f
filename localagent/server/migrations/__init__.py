"""The database schema's history: alembic revisions applied at every server start, under the schema lock.

``schema.upgrade(database)`` (called by ``Database`` when it opens) brings any database to the head
revision: an empty one gets every table; one made by a server from before migrations (tables, no
``alembic_version``) is recognised by its columns and upgraded in place, never re-created; one already
versioned gets only the revisions it lacks. ``localagent server --upgrade-only`` does the same and exits;
``localagent server --schema-revision`` shows where a database stands.

How to add a revision (one file, by hand; no ``alembic.ini`` is needed):

1. Change ``localagent/server/tables.py`` (the schema the code reads and writes).
2. Add ``versions/NNNN_what_it_does.py`` with ``revision = "NNNN"`` (the next number, four digits) and
   ``down_revision`` = the current head's number; give it ``upgrade()`` (and ``downgrade()`` where it
   can be undone) using ``alembic.op`` (``op.add_column``, ``op.create_table``, ``op.create_index``...).
   Write table shapes out in the revision rather than importing ``tables.py``: a revision must do the same
   thing forever. On SQLite, ``op.batch_alter_table`` rebuilds a table for the changes SQLite cannot make
   in place (env.py turns batch mode on there).
3. ``tests/server/test_migrations.py`` checks that head equals ``tables.py`` on SQLite and PostgreSQL
   (alembic's autogenerate comparison) and that a database of the first schema, filled, reaches head
   with every row intact; add the rows your revision must carry over to that test.

Revisions run inside one transaction per upgrade (PostgreSQL's DDL is transactional; on SQLite the
transaction is ``BEGIN IMMEDIATE``), so a failed upgrade leaves the database as it was.
"""
