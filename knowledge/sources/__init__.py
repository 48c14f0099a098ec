"""Import sources of the knowledge graph, one small module each (catalogue, brands CSV, Google taxonomy, JSON)."""
