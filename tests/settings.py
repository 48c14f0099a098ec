"""Test settings: the real settings with test-friendly defaults.

Tests run against PostgreSQL and Redis like a deployment does; override with DATABASE_URL /
REDIS_URL. Tasks run in-process unless a test starts a real worker.
"""

import os

os.environ.setdefault("FUSIONREVIEW_DEMO", "true")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/fusionreview")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/15")
os.environ.setdefault("CELERY_TASK_ALWAYS_EAGER", "true")
os.environ.setdefault("SECURE_SSL_REDIRECT", "false")
os.environ.setdefault("STATIC_MANIFEST", "false")
# Registering a version queues its frozen-set evaluation (a model run): only the tests about it turn it on.
os.environ.setdefault("EVALUATE_ON_REGISTER", "false")

from fusionreview.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# WhiteNoise warns on every request when STATIC_ROOT does not exist (nothing is collected in tests).
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # noqa: F405
