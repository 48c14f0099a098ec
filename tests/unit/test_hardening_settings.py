"""One beat schedule with every periodic job; timings that agree (issue 13, faults 2 and 3)."""

from __future__ import annotations

from django.conf import settings

from fusionreview.celery import app


def test_every_periodic_job_is_in_the_one_schedule_and_names_a_real_task():
    app.loader.import_default_modules()
    schedule = settings.CELERY_BEAT_SCHEDULE
    for name in (
        "listings-sweep",
        "review-release-expired",
        "training-jobs-sweep",
        "drift-check",
        "knowledge-activation-sweep",
        "knowledge-suggestions-refresh",
    ):
        assert name in schedule, name
    for name, entry in schedule.items():
        assert entry["task"] in app.tasks, f"{name}: {entry['task']} is not a registered task"
        assert entry["options"]["queue"] == "default"
    # Celery reads this very dict: no app adds entries of its own behind it.
    assert app.conf.beat_schedule is schedule or app.conf.beat_schedule == schedule


def test_the_sweeper_is_the_only_resend_of_classification():
    from classifier.listings import tasks

    assert not hasattr(tasks, "classify_pending")  # the old duplicate sweeper task


def test_default_timings_agree():
    from fusionreview.checks import timing_agrees

    assert timing_agrees() == []
    assert (
        settings.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"] == settings.CELERY_VISIBILITY_TIMEOUT
    )
    assert (
        settings.CELERY_VISIBILITY_TIMEOUT > settings.CLASSIFY_TIME_LIMIT + settings.CLASSIFY_RETRY_MAX_DELAY
    )
    assert settings.INFERENCE_CLAIM_TTL_SECONDS == settings.CLASSIFY_TIME_LIMIT
    assert settings.CLASSIFY_REDISPATCH_AFTER > settings.CLASSIFY_TIME_LIMIT
    # The old default (a retry budget of 5) ran out in about 15 s; the window outlives 60 s many times.
    assert settings.CLASSIFY_RETRY_WINDOW >= 600


def test_a_visibility_timeout_shorter_than_a_task_is_reported(settings):
    from fusionreview.checks import timing_agrees

    settings.CELERY_BROKER_URL = "redis://127.0.0.1:6379/0"
    settings.CELERY_VISIBILITY_TIMEOUT = 60
    assert [c.id for c in timing_agrees()] == ["fusionreview.W001"]


def test_retry_delays_grow_and_are_capped_and_the_window_is_time():
    from classifier.listings.tasks import retry_delay, retry_window_left

    delays = [retry_delay(n, max_delay=30) for n in range(12)]
    assert delays[0] < 2 and max(delays) <= 30 * 1.25
    assert retry_window_left(1000.0, window=900, now=1060.0) == 840
    assert retry_window_left(1000.0, window=900, now=1901.0) < 0
    # 60 s of outage uses a small part of the window, whatever the number of retries.
    assert sum(retry_delay(n, max_delay=30) for n in range(6)) < 900


def test_broker_and_cache_have_short_timeouts():
    options = settings.CELERY_BROKER_TRANSPORT_OPTIONS
    assert options["socket_connect_timeout"] <= 5 and options["socket_timeout"] <= 10
    assert settings.CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS["retry_policy"]["max_retries"] <= 2
