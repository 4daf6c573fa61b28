"""Identity and access: vehicle credentials, users, roles, API tokens, the audit log and abuse limits.

The broker (`broker.auth`, `broker.acl`) and the API (`api.auth`) enforce what this
package decides; it knows nothing of MQTT or HTTP itself.
"""

from security.model import ALL_FLEETS, DEFAULT_FLEET, ApiToken, AuditEntry, AuditQuery, Role, User, VehicleCredential
from security.roles import Permission, Principal, PrincipalKind
from security.service import CLI, Actor, IssuedToken, Provisioned, SecurityService
from security.stores.memory import MemorySecurityStore
from security.stores.protocol import AlreadyExists, SecurityStore

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
]
