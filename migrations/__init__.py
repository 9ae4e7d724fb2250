"""Alembic migrations of the catalog schema (run with `alembic upgrade head` or `swi catalog migrate`)."""
