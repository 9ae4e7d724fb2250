"""The catalog: settings, SQLAlchemy models and repositories shared by the API and the workers."""
