"""The API's data functions, one module per area: every query a route needs, so that
route modules hold no SQL. Each takes the SQLAlchemy engine first and plain arguments
(`Postgres.run` calls it in a worker thread) and answers plain values."""
