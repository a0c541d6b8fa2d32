"""The run-history store: SQLAlchemy tables, migrations, batched writes and queries."""
