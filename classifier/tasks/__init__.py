"""Celery tasks, one module per area; imported here so Celery's autodiscovery finds them."""

from classifier.tasks.inference import *  # noqa: F403
from classifier.tasks.review import *  # noqa: F403
from classifier.tasks.sweeper import *  # noqa: F403
from classifier.tasks.training import *  # noqa: F403
