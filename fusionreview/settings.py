"""FusionReview settings, read from environment variables.

Defaults run the embedded demo (SQLite, tasks in-process, the bundled model). Every real
deployment sets DATABASE_URL (PostgreSQL), CELERY_BROKER_URL and REDIS_URL (Redis), a
SECRET_KEY and DEBUG=false; nothing else differs between the demo and production.
"""

from __future__ import annotations

from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from fusionreview.env import env_bool, env_float, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("FUSIONREVIEW_VAR_DIR", str(BASE_DIR / "var")))

DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env_str("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG and not env_bool("FUSIONREVIEW_DEMO", False):
        raise ImproperlyConfigured(
            "SECRET_KEY must be set when DEBUG is false (or set FUSIONREVIEW_DEMO=true)"
        )
    # Only the demo and tests get here: a fixed key is fine for a local, throwaway database.
    SECRET_KEY = "demo-insecure-key-do-not-use-in-production-0123456789abcdefghijkl"

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "fusionreview.apps.FusionReviewConfig",
    "knowledge",
    "classifier",
    "classifier.webhooks",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "fusionreview.middleware.ApiErrorMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "fusionreview.urls"
WSGI_APPLICATION = "fusionreview.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "fusionreview.roles.role_context",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'db.sqlite3'}"),
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60, minimum=0),
    )
}
if DATABASES["default"]["ENGINE"] not in (
    "django.db.backends.postgresql",
    "django.db.backends.sqlite3",
):
    raise ImproperlyConfigured("DATABASE_URL must point at PostgreSQL (or SQLite for the demo)")
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The demo runs web and in-process tasks against one file: wait for locks instead of failing.
    Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    DATABASES["default"]["OPTIONS"] = {"timeout": 20}
    DATABASES["default"]["CONN_MAX_AGE"] = 0
else:
    # A database that went away (restart, failover) is noticed before a request uses the
    # connection, and a connect to a dead server gives up quickly (the API answers 503).
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault(
        "connect_timeout", env_int("DATABASE_CONNECT_TIMEOUT", 5, minimum=1)
    )
    # Parameters bound by the server, and a query prepared the fifth time a connection runs it, so
    # PostgreSQL plans the review loop's joins once per connection: planning them cost more than
    # running them. DATABASE_SERVER_SIDE_BINDING=false behind a pooler in transaction mode (PgBouncer).
    if env_bool("DATABASE_SERVER_SIDE_BINDING", True):
        DATABASES["default"]["OPTIONS"]["server_side_binding"] = True
        DATABASES["default"]["OPTIONS"]["prepare_threshold"] = env_int(
            "DATABASE_PREPARE_THRESHOLD", 5, minimum=0
        )

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# The permission set in one query (fusionreview/roles.py), then Django's ModelBackend for sign-in.
AUTHENTICATION_BACKENDS = [
    "fusionreview.roles.PermissionBackend",
    "django.contrib.auth.backends.ModelBackend",
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(VAR_DIR / "staticfiles")))
MEDIA_URL = "media/"
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(VAR_DIR / "media")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG and env_bool("STATIC_MANIFEST", True)
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

# --- uploads -----------------------------------------------------------------------------
MAX_IMAGE_BYTES = env_int("MAX_IMAGE_BYTES", 10 * 1024 * 1024, minimum=1024)
MAX_IMAGE_PIXELS = env_int("MAX_IMAGE_PIXELS", 40_000_000, minimum=10_000)
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_IMAGE_BYTES + 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = MAX_IMAGE_BYTES + 1024 * 1024
MAX_TITLE_LENGTH = env_int("MAX_TITLE_LENGTH", 300, minimum=20)

# --- Redis, cache, Celery ------------------------------------------------------------------
REDIS_URL = env_str("REDIS_URL", "")
if REDIS_URL:
    # Short timeouts: the cache (claims, throttles, sent marks) must never hang a request when Redis is away.
    CACHES = {
        "default": {
            "BACKEND": "fusionreview.cache.RedisCache",  # one client per pool, not per call
            "LOCATION": REDIS_URL,
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 2},
        }
    }
    # Sessions are read from Redis and written through to the database: no session query per request,
    # and a logout or an expired cache entry still ends in the database (the store of record). Django's
    # cached_db, except that Redis away fails no request (fusionreview/sessions.py).
    SESSION_ENGINE = "fusionreview.sessions"
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "")
CELERY_RESULT_BACKEND = env_str("CELERY_RESULT_BACKEND", CELERY_BROKER_URL)
# No broker configured means the embedded demo: tasks run in-process, synchronously.
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", not CELERY_BROKER_URL)
if not CELERY_BROKER_URL and CELERY_TASK_ALWAYS_EAGER:
    # Celery still opens a producer for an in-process task; with no URL kombu warns "No hostname was
    # supplied" on the demo's first task. The in-memory transport is all an eager run needs.
    CELERY_BROKER_URL = "memory://localhost/"
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_DEFAULT_QUEUE = "default"
# Queues are chosen here, not with a task's `queue=` attribute (deprecated in Celery 5, ignored in 6):
# the model runs on `inference`, fine-tuning and gate runs on `training`, everything else on `default`.
CELERY_TASK_ROUTES = {
    "classifier.tasks.classify_*": {"queue": "inference"},
    "classifier.tasks.train_*": {"queue": "training"},
    "classifier.tasks.evaluate_*": {"queue": "training"},
}
# A worker that dies mid-task must not lose the message: acknowledge after the work, one at a time.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_RESULT_EXPIRES = 3600
# Workers log through LOGGING below (JSON lines with the listing ids when LOG_FORMAT=json).
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]

# --- timing that must agree (tasks, broker, claims, sweeper) --------------------------------
# A classification batch is warned at the soft limit (it gives its listings back) and killed at
# the hard limit. Claims a worker holds in the cache last exactly that long: no live task can
# still be working on a listing whose claim has expired.
CLASSIFY_TIME_LIMIT = env_int("CLASSIFY_TIME_LIMIT", 120, minimum=10)
CLASSIFY_SOFT_TIME_LIMIT = env_int("CLASSIFY_SOFT_TIME_LIMIT", CLASSIFY_TIME_LIMIT - 20, minimum=5)
INFERENCE_CLAIM_TTL_SECONDS = CLASSIFY_TIME_LIMIT
# Retries are bounded by time, not count: a task whose database (or broker) is away retries with
# back-off (at most CLASSIFY_RETRY_MAX_DELAY apart) for CLASSIFY_RETRY_WINDOW seconds, which
# outlives an outage of several minutes; after that the sweeper still owns the listing.
CLASSIFY_RETRY_WINDOW = env_int("CLASSIFY_RETRY_WINDOW", 900, minimum=60)
CLASSIFY_RETRY_MAX_DELAY = env_int("CLASSIFY_RETRY_MAX_DELAY", 30, minimum=1)
# Redis redelivers a message that was delivered but not acknowledged after the visibility
# timeout (a worker killed with -9). It must exceed the longest a message can legitimately stay
# unacknowledged -- the hard time limit plus the longest retry countdown (Redis keeps ETA
# messages unacknowledged on the worker) -- or a running task would be handed out twice.
# Training jobs run longer; their redelivery is harmless (claimed queued -> running once).
# The check `fusionreview.W001` warns when it does not hold.
CELERY_VISIBILITY_TIMEOUT = env_int(
    "CELERY_VISIBILITY_TIMEOUT", 2 * (CLASSIFY_TIME_LIMIT + CLASSIFY_RETRY_MAX_DELAY), minimum=10
)
# The broker must never make a web request wait: short connect/socket timeouts, and the
# publish itself retries once at most (fusionreview.dispatch). Redis down -> the listing is
# accepted, the send fails in about a second, the sweeper sends it later.
BROKER_TIMEOUT_SECONDS = env_float("BROKER_TIMEOUT_SECONDS", 1.0, minimum=0.1, maximum=60.0)
CELERY_BROKER_CONNECTION_TIMEOUT = BROKER_TIMEOUT_SECONDS
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Workers and beat keep reconnecting through a Redis restart (None: no limit).
CELERY_BROKER_CONNECTION_MAX_RETRIES = None
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": CELERY_VISIBILITY_TIMEOUT,
    "socket_connect_timeout": BROKER_TIMEOUT_SECONDS,
    "socket_timeout": max(3.0, 2 * BROKER_TIMEOUT_SECONDS),
    "retry_on_timeout": False,
    "health_check_interval": 25,
}
CELERY_REDIS_SOCKET_CONNECT_TIMEOUT = BROKER_TIMEOUT_SECONDS
CELERY_REDIS_SOCKET_TIMEOUT = max(3.0, 2 * BROKER_TIMEOUT_SECONDS)
# The Redis result backend subscribes to a task's result when it is sent; its reconnect policy
# (20 tries by default, ~19 s with Redis down) would otherwise hold the ingest request.
CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS = {
    "socket_connect_timeout": BROKER_TIMEOUT_SECONDS,
    "retry_policy": {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2},
}
CELERY_RESULT_BACKEND_ALWAYS_RETRY = True
CELERY_RESULT_BACKEND_MAX_RETRIES = 10
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = False

# The sweeper (classifier.listings.tasks.listings_sweep) runs every SWEEP_INTERVAL seconds. It sends again the
# listings still queued without a live "sent" mark (never sent: broker down at ingest; lost:
# Redis restarted without persistence; stuck: the worker was killed), once they are
# SWEEP_MIN_AGE old (the on-commit send of a fresh listing is not raced). A sent mark lives
# CLASSIFY_REDISPATCH_AFTER seconds -- longer than a batch may run -- so a listing whose message
# is merely waiting is not sent twice in that time. Failed listings are tried again after the
# same delay, at most CLASSIFY_FAILED_MAX_ATTEMPTS times.
SWEEP_INTERVAL = env_int("SWEEP_INTERVAL", 30, minimum=5)
SWEEP_MIN_AGE = env_int("SWEEP_MIN_AGE", 30, minimum=1)
SWEEP_BATCH_LIMIT = env_int("SWEEP_BATCH_LIMIT", 5000, minimum=10)
CLASSIFY_REDISPATCH_AFTER = env_int(
    "CLASSIFY_REDISPATCH_AFTER", CLASSIFY_TIME_LIMIT + CLASSIFY_RETRY_MAX_DELAY + 30, minimum=10
)
CLASSIFY_FAILED_MAX_ATTEMPTS = env_int("CLASSIFY_FAILED_MAX_ATTEMPTS", 3, minimum=0)

# Every periodic job, in one place. Review claims last CLAIM_TTL_SECONDS (below); the release
# runs every SWEEP_INTERVAL, so an abandoned claim is back in the queue within TTL + interval.
CELERY_BEAT_SCHEDULE: dict = {
    "listings-sweep": {
        "task": "classifier.tasks.listings_sweep",
        "schedule": float(SWEEP_INTERVAL),
        "options": {"queue": "default", "expires": SWEEP_INTERVAL},
    },
    "review-release-expired": {
        "task": "classifier.tasks.review.review_release_expired",
        "schedule": float(SWEEP_INTERVAL),
        "options": {"queue": "default", "expires": SWEEP_INTERVAL},
    },
    # Fine-tuning: fail jobs whose worker died (stale heartbeat); watch auto-accept accuracy for drift.
    "training-jobs-sweep": {
        "task": "classifier.tasks.training_jobs_sweep",
        "schedule": 60.0,
        "options": {"queue": "default", "expires": 60},
    },
    "drift-check": {
        "task": "classifier.tasks.drift_check",
        "schedule": 3600.0,
        "options": {"queue": "default", "expires": 3600},
    },
    # Knowledge: push published versions the entity cache missed; derive suggestions from decisions.
    "knowledge-activation-sweep": {
        "task": "knowledge.tasks.knowledge_activation_sweep",
        "schedule": 30.0,
        "options": {"queue": "default", "expires": 30},
    },
    "knowledge-suggestions-refresh": {
        "task": "knowledge.tasks.knowledge_suggestions_refresh",
        "schedule": 15 * 60.0,
        "options": {"queue": "default", "expires": 15 * 60},
    },
    # Re-route jobs a publish could not queue (broker down) run here.
    "knowledge-reroute-sweep": {
        "task": "knowledge.tasks.knowledge_reroute_sweep",
        "schedule": 60.0,
        "options": {"queue": "default", "expires": 60},
    },
}

# --- the model -----------------------------------------------------------------------------
FUSION_MODEL_DIR = Path(env_str("FUSION_MODEL_DIR", str(BASE_DIR / "fusionreview" / "demo" / "model")))
FUSION_DEVICE = env_str("FUSION_DEVICE", "")  # "" picks CUDA when present, else CPU
# the compressed CPU serving build (the fusion model's Linear layers in INT8 + the vision backbone on ONNX
# Runtime): several times the items/s of full precision on CPU (tests/bench/bench_fusion_v2.py --quantized);
# ignored on CUDA. FUSION_QUANTIZED=0 serves the full-precision PyTorch model.
FUSION_QUANTIZED = env_bool("FUSION_QUANTIZED", True)
# None means "use the threshold chosen on val and stored with the model". A title that names no product
# type is held to the model's own untyped threshold when that is higher (calibration.json).
REVIEW_THRESHOLD = env_float("REVIEW_THRESHOLD", None, minimum=0.0, maximum=1.0)
INFERENCE_BATCH_SIZE = env_int("INFERENCE_BATCH_SIZE", 16, minimum=1)
CLAIM_TTL_SECONDS = env_int("CLAIM_TTL_SECONDS", 600, minimum=10)
REVIEW_SLA_HOURS = env_int("REVIEW_SLA_HOURS", 24, minimum=1)

# --- fine-tuning, evaluation gate, drift monitor ---------------------------------------------
FUSION_VERSIONS_DIR = Path(env_str("FUSION_VERSIONS_DIR", str(VAR_DIR / "models")))
# Replay (earlier training data) and the frozen evaluation set; "" = the catalogue beside the repo, else the demo sample.
FUSION_REPLAY_CATALOGUE = env_str("FUSION_REPLAY_CATALOGUE", "")
FUSION_EVAL_CATALOGUE = env_str("FUSION_EVAL_CATALOGUE", "")
FUSION_EVAL_SPLIT = env_str("FUSION_EVAL_SPLIT", "test")
FUSION_EVAL_SIZE = env_int("FUSION_EVAL_SIZE", 300, minimum=20)
FINETUNE_LR = env_float("FINETUNE_LR", 3e-4, minimum=0.0, maximum=1.0)
FINETUNE_REPLAY_MAX = env_int("FINETUNE_REPLAY_MAX", 2000, minimum=0)
FINETUNE_REPLAY_RATIO = env_float("FINETUNE_REPLAY_RATIO", 2.0, minimum=0.0, maximum=100.0)
# Fewer approved corrections than this and a fine-tuning job is refused (and the gate refuses its
# candidate): a handful of examples moves the model by noise, not by what people taught it.
FINETUNE_MIN_CORRECTIONS = env_int("FINETUNE_MIN_CORRECTIONS", 20, minimum=1)
# Evaluate every model version on the frozen set as soon as it is registered (the bundled one too).
EVALUATE_ON_REGISTER = env_bool("EVALUATE_ON_REGISTER", True)
PROMOTION_MARGIN = env_float("PROMOTION_MARGIN", 0.5, minimum=0.0, maximum=100.0)
PROMOTION_CATEGORY_MARGIN = env_float("PROMOTION_CATEGORY_MARGIN", 5.0, minimum=0.0, maximum=100.0)
PROMOTION_LARGE_CATEGORY_MIN = env_int("PROMOTION_LARGE_CATEGORY_MIN", 30, minimum=1)
GATE_RECENT_DAYS = env_int("GATE_RECENT_DAYS", 14, minimum=1)
GATE_RECENT_LIMIT = env_int("GATE_RECENT_LIMIT", 200, minimum=1)
GATE_RECENT_MIN_ITEMS = env_int("GATE_RECENT_MIN_ITEMS", 20, minimum=1)
TRAINING_HEARTBEAT_TIMEOUT = env_int("TRAINING_HEARTBEAT_TIMEOUT", 300, minimum=30)
# The training-jobs sweep (beat, every minute) sends again a job still queued, or a registered version
# still without an evaluation, this long after it was created (its message never reached a worker),
# and not again within as long; an evaluation is sent at most TRAINING_EVALUATION_MAX_SENDS times.
TRAINING_REDISPATCH_AFTER = env_int("TRAINING_REDISPATCH_AFTER", 300, minimum=10)
TRAINING_EVALUATION_MAX_SENDS = env_int("TRAINING_EVALUATION_MAX_SENDS", 3, minimum=1)
DRIFT_THRESHOLD_POINTS = env_float("DRIFT_THRESHOLD_POINTS", 5.0, minimum=0.0, maximum=100.0)
DRIFT_WINDOW_DAYS = env_int("DRIFT_WINDOW_DAYS", 7, minimum=1)
DRIFT_MIN_CHECKS = env_int("DRIFT_MIN_CHECKS", 30, minimum=1)
DRIFT_AUTO_FINETUNE = env_bool("DRIFT_AUTO_FINETUNE", False)
DRIFT_AUTO_EPOCHS = env_int("DRIFT_AUTO_EPOCHS", 3, minimum=1)

# --- API -----------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    # Every error body is {"detail", "code"[, "errors"]} (fusionreview/api_errors.py).
    "EXCEPTION_HANDLER": "fusionreview.api_errors.exception_handler",
    # The token endpoint (fusionreview.auth): requests per client address, on top of the lockout.
    "DEFAULT_THROTTLE_RATES": {"auth": env_str("AUTH_THROTTLE_RATE", "30/min")},
}
# Sign-in lockout (login page and token endpoint, fusionreview/auth.py).
LOGIN_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 5, minimum=1)
LOGIN_IP_FAILURE_LIMIT = env_int("LOGIN_IP_FAILURE_LIMIT", 100, minimum=1)
LOGIN_LOCKOUT_SECONDS = env_int("LOGIN_LOCKOUT_SECONDS", 900, minimum=1)
# /metrics (Prometheus): a bearer token for the scraper, or a scrape from these addresses (none by default).
METRICS_TOKEN = env_str("METRICS_TOKEN", "")
METRICS_ALLOWED_IPS = env_list("METRICS_ALLOWED_IPS", [])
# Retry-After of a 503 from the API while PostgreSQL or Redis is down (fusionreview/middleware.py).
API_RETRY_AFTER_SECONDS = env_int("API_RETRY_AFTER_SECONDS", 30, minimum=1)
SPECTACULAR_SETTINGS = {
    "TITLE": "FusionReview API",
    "DESCRIPTION": "Listing ingestion, predictions and review state.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    # Swagger UI and ReDoc from the installed drf-spectacular-sidecar package: no CDN, works offline.
    # Request and response shapes apart: an upload is `format: binary` in, a URL out.
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "ListingStatusEnum": "classifier.models.Listing.Status",
        "ReviewTaskStatusEnum": "classifier.models.ReviewTask.Status",
    },
}

# --- security (production: DEBUG=false behind TLS) -----------------------------------------
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not DEBUG and not env_bool("FUSIONREVIEW_DEMO", False))
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", SECURE_SSL_REDIRECT)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", SECURE_SSL_REDIRECT)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000 if SECURE_SSL_REDIRECT else 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE_HSTS_SECONDS > 0
SECURE_HSTS_PRELOAD = SECURE_HSTS_SECONDS > 0
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("BEHIND_PROXY", False) else None
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {
            "()": "fusionreview.logging.ContextTextFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s: %(message)s",
        },
        "json": {"()": "fusionreview.logging.JsonFormatter"},
    },
    # LOG_FORMAT=json: one JSON object per line with the listing ids (fusionreview/logging.py).
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json" if env_str("LOG_FORMAT", "plain") == "json" else "plain",
        }
    },
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    # One line per task is the worker's own log; in-process (demo) runs would repeat every batch twice.
    "loggers": {"celery.app.trace": {"level": "WARNING" if CELERY_TASK_ALWAYS_EAGER else "INFO"}},
}

# --- webhooks (classifier/webhooks): signed POSTs to integrators, retried with backoff ---------
WEBHOOK_COLLECT_INTERVAL = env_int("WEBHOOK_COLLECT_INTERVAL", 5, minimum=1)
WEBHOOK_MAX_ATTEMPTS = env_int("WEBHOOK_MAX_ATTEMPTS", 8, minimum=1)
# Waits after failures: base, 3x, 9x, ... seconds, capped at an hour (8 attempts span about 2 hours).
# The collector sends a retry once it is due (no broker countdown outliving the visibility timeout).
WEBHOOK_RETRY_BASE_SECONDS = env_int("WEBHOOK_RETRY_BASE_SECONDS", 10, minimum=0)
WEBHOOK_TIMEOUT_SECONDS = env_int("WEBHOOK_TIMEOUT_SECONDS", 10, minimum=1)
CELERY_BEAT_SCHEDULE["webhooks-collect"] = {
    "task": "webhooks.collect",
    "schedule": float(WEBHOOK_COLLECT_INTERVAL),
    "options": {"queue": "default", "expires": WEBHOOK_COLLECT_INTERVAL},
}
