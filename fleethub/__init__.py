"""fleethub: an MQTT hub with device twins for vehicle fleets. This package is the composition root."""

from fleethub.settings import Settings, load_settings

__all__ = ["Settings", "load_settings"]
