"""Database layer: models, engines and sessions, repositories (all queries live here)."""
