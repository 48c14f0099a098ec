"""Reads. One module per area (listings, review, training)."""
