"""Database: the declarative base, the engine and the one-transaction-per-unit-of-work session."""

from idp.db.base import Base, UTCDateTime, new_id, utcnow
from idp.db.engine import DATABASE_ERRORS, Database

__all__ = ["DATABASE_ERRORS", "Base", "Database", "UTCDateTime", "new_id", "utcnow"]
