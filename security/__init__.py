"""Identity and access: vehicle credentials, users, roles, API tokens, the audit log and abuse limits.

The broker (`broker.auth`, `broker.acl`) and the API (`api.auth`) enforce what this
package decides; it knows nothing of MQTT or HTTP itself.
"""

from security.audit import Actor, audit_entry, audit_insert
from security.model import ALL_FLEETS, DEFAULT_FLEET, ApiToken, AuditEntry, AuditQuery, Role, User, VehicleCredential
from security.roles import Permission, Principal, PrincipalKind
from security.service import CLI, IssuedToken, Provisioned, SecurityService
from security.store import AlreadyExists, MemorySecurityStore, SecurityStore

__all__ = [
    "ALL_FLEETS",
    "CLI",
    "DEFAULT_FLEET",
    "Actor",
    "AlreadyExists",
    "ApiToken",
    "AuditEntry",
    "AuditQuery",
    "IssuedToken",
    "MemorySecurityStore",
    "Permission",
    "Principal",
    "PrincipalKind",
    "Provisioned",
    "Role",
    "SecurityService",
    "SecurityStore",
    "User",
    "VehicleCredential",
    "audit_entry",
    "audit_insert",
]
