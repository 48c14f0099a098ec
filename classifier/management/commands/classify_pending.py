"""Queue every listing still waiting for a prediction from the serving model (a sweeper).

    manage.py classify_pending [--limit N] [--sync]

Use it after an outage (broker down when listings arrived) or after promoting a model that
should also classify the backlog. Safe to run any time: classification is idempotent.
"""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from classifier.inference import EngineUnavailable, model_version_serving
from classifier.selectors.listings import listings_pending_ids


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser) -> None:
        parser.add_argument("--limit", type=int, default=100_000)
        parser.add_argument(
            "--sync", action="store_true", help="classify here, in this process, instead of queueing"
        )

    def handle(self, *args, limit: int, sync: bool, **options) -> None:
        try:
            version = model_version_serving()
        except EngineUnavailable as exc:
            raise CommandError(str(exc)) from exc
        ids = listings_pending_ids(version=version, limit=limit)
        size = settings.INFERENCE_BATCH_SIZE
        batches = [ids[i : i + size] for i in range(0, len(ids), size)]
        if sync:
            from classifier.services.classification import listings_classify

            totals = {"accepted": 0, "in_review": 0, "failed": 0}
            for batch in tqdm(batches, unit="batch", desc="classify"):
                report = listings_classify(listing_ids=batch)
                for key in totals:
                    totals[key] += len(getattr(report, key))
            self.stdout.write(f"{len(ids)} listings classified with {version.name}: {totals}")
            return
        from classifier.tasks.inference import classify_listings

        for batch in batches:
            classify_listings.delay(batch)
        self.stdout.write(f"{len(ids)} listings queued in {len(batches)} batches for {version.name}")
