"""A mock OpenStack cloud that reproduces the 29-step VM boot, traced with OpenTelemetry."""

__version__ = "0.1.0"
