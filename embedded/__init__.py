"""The embedded default: PostgreSQL and Redis from PyPI wheels, supervised with the worker, beat
and the API, all as child processes of `rcs serve`. Production runs the same parts as separate
services; nothing here is imported by the API's request path or the workers' tasks."""
