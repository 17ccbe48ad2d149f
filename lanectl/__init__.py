"""lanectl — edge lane controller for parking lots."""

__version__ = "0.1.0"
