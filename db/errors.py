"""Typed errors raised by the repositories; the API maps them to HTTP statuses once."""

from __future__ import annotations


class RepositoryError(Exception):
    """Base class of every error a repository raises on purpose."""


class NotFound(RepositoryError, LookupError):
    """The row does not exist, or belongs to another tenant (indistinguishable on purpose).

    Each kind of row has its own subclass (callers catch exactly one), naming its entity in the
    class statement: `class PolicyNotFound(NotFound, entity="policy")`.
    """

    entity = "row"

    def __init_subclass__(cls, *, entity: str, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        cls.entity = entity

    def __init__(self, ref: object) -> None:
        super().__init__(f"{self.entity} {ref} not found")
        self.ref = ref


class TenantNotFound(NotFound, entity="tenant"): ...


class ApiKeyNotFound(NotFound, entity="API key"): ...


class PolicyNotFound(NotFound, entity="policy"): ...


class PolicyVersionNotFound(NotFound, entity="policy version"): ...


class GenerationNotFound(NotFound, entity="generation"): ...


class CalibrationRunNotFound(NotFound, entity="calibration run"): ...


class ModelNotFound(NotFound, entity="model"): ...


class Conflict(RepositoryError):
    """The change conflicts with the current state of the database."""


class AlreadyExists(Conflict):
    """A unique name is taken (tenant name, policy name within a tenant)."""

    def __init__(self, entity: str, name: str) -> None:
        super().__init__(f"{entity} {name!r} already exists")
        self.entity = entity
        self.name = name


class StaleVersion(Conflict):
    """The policy's active version moved since the caller read it (optimistic concurrency)."""

    def __init__(self, expected: int | None, actual: int | None) -> None:
        super().__init__(f"policy active version is {actual}, expected {expected}")
        self.expected = expected
        self.actual = actual


class LastAdminKey(Conflict):
    """Revoking this key would leave its tenant without an active `tenant_admin` key."""

    field = "key_id"

    def __init__(self, key_id: object) -> None:
        super().__init__(
            f"API key {key_id} is the tenant's last active tenant_admin key; create another "
            "admin key before revoking it"
        )


class NoShadowVersion(Conflict):
    """The policy has no shadow version to promote."""

    def __init__(self, name: str) -> None:
        super().__init__(f"policy {name!r} has no shadow version")


class NoActiveVersion(Conflict):
    """A policy without an active version cannot serve requests."""


class KeyChanged(RepositoryError):
    """A write made under a key as the caller read it found the key changed meanwhile (revoked,
    its tenant deactivated or its quotas changed) and wrote nothing: read the key again."""

    def __init__(self, key_id: object) -> None:
        super().__init__(f"API key {key_id} changed since it was read")
        self.key_id = key_id


class InvalidStats(RepositoryError, ValueError):
    """A statistics increment that cannot be stored (wrong histogram length, negative counts)."""
