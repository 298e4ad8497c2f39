"""etl: exactly-once, resumable ingest of the DataSync Analytics API into PostgreSQL."""

__version__ = "0.1.0"
