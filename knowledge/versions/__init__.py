"""Versions of the graph: the snapshot build, publish (and its impact preview), activation in the
entity cache, discard and restore, the diff between versions and the change log's pages."""
