"""Alembic environment for the run history; Legato runs it programmatically with a connection."""

from alembic import context

from legato.store.models import metadata

config = context.config


def run() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        import sqlalchemy as sa

        url = config.get_main_option("sqlalchemy.url")
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            context.configure(connection=conn, target_metadata=metadata, render_as_batch=True)
            context.run_migrations()
        return
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    context.run_migrations()


run()
