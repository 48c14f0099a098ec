"""The classifier's side of the knowledge graph.

A publish re-routes the review queue: `knowledge` sends `knowledge.signals.snapshot_published`
and this package (connected in `ClassifierConfig.ready`, see `wiring.connect`) records the plan,
queues the background job that resolves the open knowledge-routed tasks that no longer conflict,
and answers the facts `knowledge.ports.GraphReferences` asks about listings, predictions and
review rows. Knowledge never imports this package; the arrow points from here to there.
"""
