"""Alembic's entry point: runs the migrations on the connection that ``bert4rec.store.database.migrate`` opened,
or, for developers writing a new revision (`alembic -c ... revision --autogenerate`), on ``sqlalchemy.url``."""

from alembic import context
from sqlalchemy import create_engine

from bert4rec.store.schema import metadata


def run(connection) -> None:
    # render_as_batch: SQLite alters a table by copying it, which Alembic's batch mode does for us.
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is not None:
    run(connection)
else:
    with create_engine(context.config.get_main_option("sqlalchemy.url")).begin() as opened:
        run(opened)
