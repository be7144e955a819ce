"""orderbell: order notifications by SMS and e-mail, driven by shop rules and templates."""

__version__ = "0.1.0"
