"""Identity and access: vehicle credentials, users, roles, API tokens, the audit log and abuse limits.

The broker (`broker.auth`, `broker.acl`) and the API (`api.auth`) enforce what this
package decides; it knows nothing of MQTT or HTTP itself.
"""

from security.audit import Actor, TwinWriteAudit, audit_entry, audit_insert, audit_statement
from security.limits import AbuseLimits, LoginBackoff, TokenBuckets
from security.model import ALL_FLEETS, DEFAULT_FLEET, ApiToken, AuditEntry, AuditQuery, Role, User, VehicleCredential
from security.roles import Permission, Principal, PrincipalKind
from security.service import CLI, IssuedToken, Provisioned, SecurityService
from security.stores import (
    AlreadyExists,
    MemorySecurityStore,
    SecurityStore,
    SqlSecurityStore,
    security_store,
)

__all__ = [
    "ALL_FLEETS",
    "CLI",
    "DEFAULT_FLEET",
    "AbuseLimits",
    "Actor",
    "AlreadyExists",
    "ApiToken",
    "AuditEntry",
    "AuditQuery",
    "IssuedToken",
    "LoginBackoff",
    "MemorySecurityStore",
    "Permission",
    "Principal",
    "PrincipalKind",
    "Provisioned",
    "Role",
    "SecurityService",
    "SecurityStore",
    "SqlSecurityStore",
    "TokenBuckets",
    "TwinWriteAudit",
    "User",
    "VehicleCredential",
    "audit_entry",
    "audit_insert",
    "audit_statement",
    "security_store",
]
