"""Ops tests share the API tests' migrated PostgreSQL database fixture."""

from tests.api.conftest import api_db_url  # noqa: F401
