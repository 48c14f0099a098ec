"""Writes. One module per area (listings, review, training); names are `<entity>_<action>`."""
