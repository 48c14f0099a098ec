"""Send classification for every listing still waiting for it (the sweeper, run by hand).

    manage.py classify_pending [--limit N] [--sync]

Beat runs the same sweep every SWEEP_INTERVAL seconds (`classifier.tasks.listings_sweep`);
by hand it ignores the age and "recently sent" marks and sends every queued listing (and the
failed ones with attempts left). Safe to run any time: classification is idempotent.
`--sync` classifies the queued listings here, in this process, without a broker.
"""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from classifier.listings.classification import listings_classify
from classifier.listings.selectors import listings_pending_ids
from classifier.listings.services import listings_sweep
from classifier.registry.artifacts import EngineUnavailable
from classifier.registry.services import model_version_serving_ensure


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser) -> None:
        parser.add_argument("--limit", type=int, default=100_000)
        parser.add_argument(
            "--sync", action="store_true", help="classify here, in this process, instead of queueing"
        )

    def handle(self, *args, limit: int, sync: bool, **options) -> None:
        if not sync:
            report = listings_sweep(limit=limit, min_age=0, respect_marks=False)
            self.stdout.write(f"sweep: {report.as_dict()}")
            if report.unsent:
                raise CommandError(f"{report.unsent} listings could not be sent: is the broker up?")
            return

        try:
            version = model_version_serving_ensure()
        except EngineUnavailable as exc:
            raise CommandError(str(exc)) from exc
        ids = listings_pending_ids(version=version, limit=limit)
        size = settings.INFERENCE_BATCH_SIZE
        batches = [ids[i : i + size] for i in range(0, len(ids), size)]
        totals = {"accepted": 0, "in_review": 0, "failed": 0}
        for batch in tqdm(batches, unit="batch", desc="classify"):
            report = listings_classify(listing_ids=batch)
            for key in totals:
                totals[key] += len(getattr(report, key))
        self.stdout.write(f"{len(ids)} listings classified with {version.name}: {totals}")
