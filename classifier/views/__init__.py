"""HTMX views, one module per area; each renders a full page or, for htmx requests, a partial."""
