"""Unique parcel tracking numbers from in-memory Snowflake IDs."""

__version__ = "0.1.0"
