"""The admin pages, one module per area."""
