"""The HTTP side: server API, health, metrics, admin and demo pages."""
