"""The identity service of the volunteer system."""

__version__ = "0.1.0"
