"""Notifications: channels per fleet (signed webhooks, Slack/Teams-compatible chat, SMTP email),
routing by fleet, severity, rule and event, quiet hours, de-duplication, per-channel rates with
digests, and an outbox in the store that a worker delivers with retries and a dead-letter list.
"""

from notifications.metrics import NotificationMetrics
from notifications.model import (
    SEVERITIES,
    Channel,
    ChannelBody,
    ChannelKind,
    Delivery,
    DeliveryQuery,
    DeliveryState,
    Notification,
    NotificationKind,
    QuietHours,
)
from notifications.render import sign, verify
from notifications.routing import TokenBucket, quiet, routes
from notifications.service import Counters, NotificationService, Publisher
from notifications.settings import NotificationSettings
from notifications.stores import (
    MemoryNotificationStore,
    NotificationStore,
    SqlNotificationStore,
    notification_store,
)
from notifications.transports import DeliveryFailed, HttpTransport, SmtpTransport, Transport

__all__ = [
    "SEVERITIES",
    "Channel",
    "ChannelBody",
    "ChannelKind",
    "Counters",
    "Delivery",
    "DeliveryFailed",
    "DeliveryQuery",
    "DeliveryState",
    "HttpTransport",
    "MemoryNotificationStore",
    "Notification",
    "NotificationKind",
    "NotificationMetrics",
    "NotificationService",
    "NotificationSettings",
    "NotificationStore",
    "Publisher",
    "QuietHours",
    "SmtpTransport",
    "SqlNotificationStore",
    "TokenBucket",
    "Transport",
    "notification_store",
    "quiet",
    "routes",
    "sign",
    "verify",
]
