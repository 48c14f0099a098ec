"""WSGI entry point (gunicorn fusionreview.wsgi)."""

import gc
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fusionreview.settings")
application = get_wsgi_application()
# Everything loaded so far lives as long as the worker: keep it out of the garbage collector's
# scans, which otherwise walk the whole heap now and then in the middle of a request.
gc.freeze()
