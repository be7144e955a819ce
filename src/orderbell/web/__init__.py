"""The shop owner's admin UI: server-rendered pages with htmx, mounted at /admin."""
