"""Repositories: keyword-only functions over a Session that flush and never commit."""
