"""Classification tasks on the `inference` queue."""

__all__: list[str] = []
