"""Import and export of the graph: sources (catalogue, brands CSV, Google taxonomy, JSON), one small
module each, the import services they share, and the import/export pages."""
