"""The brand/category knowledge graph that the fusion model consults at inference.

Ops edit these rows; a publish turns them into an immutable `KnowledgeSnapshot`
(`classifier.fusion.knowledge`) that the workers load through the entity cache.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.db.models.functions import Lower


class Category(models.Model):
    """A node of the category tree (three levels and deeper); leaves are article types."""

    name = models.CharField(max_length=120)
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="children"
    )
    description = models.TextField(blank=True)
    is_active = models.BooleanField(default=True)
    # Optimistic concurrency: an edit names the version it started from and is refused if stale.
    version = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "categories"
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint("parent", Lower("name"), name="category_unique_name_per_parent"),
            # NULL parents are distinct in SQL, so roots need their own rule.
            models.UniqueConstraint(
                Lower("name"), condition=Q(parent__isnull=True), name="category_unique_root_name"
            ),
        ]
        permissions = [
            ("view_knowledge", "Can view the knowledge graph"),
            ("edit_knowledge", "Can edit and publish the knowledge graph"),
        ]

    def __str__(self) -> str:
        return self.path_label

    @property
    def path(self) -> list[str]:
        names: list[str] = []
        node: Category | None = self
        seen: set[int] = set()
        while node is not None and node.pk not in seen:
            seen.add(node.pk)
            names.append(node.name)
            node = node.parent
        return list(reversed(names))

    @property
    def path_label(self) -> str:
        """The snapshot id of this node: names from the root joined by ' > '."""
        return " > ".join(self.path)


class CategoryAlias(models.Model):
    """Another name for a category, in any script ("T-shirt", "Tee", "T恤")."""

    category = models.ForeignKey(Category, on_delete=models.CASCADE, related_name="aliases")
    alias = models.CharField(max_length=200)

    class Meta:
        constraints = [
            models.UniqueConstraint("category", Lower("alias"), name="category_alias_unique"),
        ]

    def __str__(self) -> str:
        return self.alias


class Brand(models.Model):
    """A brand and, through `BrandCategory`, the categories it sells."""

    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    is_active = models.BooleanField(default=True)
    categories = models.ManyToManyField(Category, through="BrandCategory", related_name="brands", blank=True)
    version = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(Lower("name"), name="brand_unique_name")]

    def __str__(self) -> str:
        return self.name


class BrandAlias(models.Model):
    """Another spelling of a brand ("UCB", "United Colors of Benetton", "贝纳通"); unique across brands."""

    brand = models.ForeignKey(Brand, on_delete=models.CASCADE, related_name="aliases")
    alias = models.CharField(max_length=200)

    class Meta:
        constraints = [models.UniqueConstraint(Lower("alias"), name="brand_alias_unique")]

    def __str__(self) -> str:
        return self.alias


class BrandCategory(models.Model):
    """Relation: the brand sells products of this category (any level of the tree).

    `support` is the evidence: how many approved listings back the relation (catalogue rows at
    import, approved predictions and corrections since). The knowledge check treats a brand's
    absence from a branch as evidence against a prediction only when its relations are well
    supported; `source` says where the relation came from.
    """

    class Source(models.TextChoices):
        IMPORT = "import", "Imported"
        OPS = "ops", "Added by ops"
        MINED = "mined", "Mined from the catalogue"
        DECISIONS = "decisions", "Learnt from review decisions"

    brand = models.ForeignKey(Brand, on_delete=models.CASCADE)
    category = models.ForeignKey(Category, on_delete=models.CASCADE)
    support = models.PositiveIntegerField(default=0)
    source = models.CharField(max_length=20, choices=Source.choices, default=Source.OPS)

    class Meta:
        constraints = [models.UniqueConstraint("brand", "category", name="brand_category_unique")]

    def __str__(self) -> str:
        return f"{self.brand_id} sells {self.category_id}"


class CategoryAttribute(models.Model):
    """An attribute of a category with its allowed values; `required`/`excluded` are relations."""

    category = models.ForeignKey(Category, on_delete=models.CASCADE, related_name="attributes")
    name = models.CharField(max_length=100)
    allowed_values = models.JSONField(default=list, blank=True)
    required = models.BooleanField(default=False)
    excluded = models.BooleanField(default=False)

    class Meta:
        constraints = [models.UniqueConstraint("category", Lower("name"), name="category_attribute_unique")]

    def __str__(self) -> str:
        return f"{self.category.name}.{self.name}"


class NoiseTerm(models.Model):
    """A marketing phrase the title reader down-weights ("hot sale", "爆款")."""

    term = models.CharField(max_length=200)
    weight = models.FloatField(
        default=0.1, help_text="Multiplier applied to the term's tokens (0 removes them)."
    )

    class Meta:
        ordering = ["term"]
        constraints = [models.UniqueConstraint(Lower("term"), name="noise_term_unique")]

    def __str__(self) -> str:
        return self.term


class KnowledgeVersion(models.Model):
    """A published, immutable snapshot of the whole graph; the highest number is in force."""

    number = models.PositiveIntegerField(unique=True)
    snapshot = models.JSONField()
    checksum = models.CharField(max_length=64)
    reason = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    # Snapshot id -> table row id ({"categories": {label: pk}, "brands": {id: pk}}), so a restore
    # can put moved or renamed rows back instead of creating twins.
    row_ids = models.JSONField(default=dict, blank=True)
    # Set once the entity cache holds this version: until then the previous one stays in force.
    activated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-number"]

    def __str__(self) -> str:
        return f"knowledge v{self.number}"


class ChangeLog(models.Model):
    """One edit of the graph: who, when, why, and the changed rows before and after, as JSON.

    Edits are pending until a publish carries them into a `KnowledgeVersion`, or a discard
    drops them (the tables go back to the last published snapshot).
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Pending publish"
        PUBLISHED = "published", "Published"
        DISCARDED = "discarded", "Discarded"

    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    action = models.CharField(max_length=40, db_index=True)
    object_type = models.CharField(max_length=40)
    object_id = models.CharField(max_length=64)
    object_label = models.CharField(max_length=500, blank=True)
    reason = models.TextField(blank=True)
    before = models.JSONField(default=dict, blank=True)
    after = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING, db_index=True)
    knowledge_version = models.ForeignKey(
        KnowledgeVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="changes"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["object_type", "object_id", "-created_at"], name="changelog_object_idx")
        ]

    def __str__(self) -> str:
        return f"{self.action} {self.object_type}:{self.object_id}"


class Suggestion(models.Model):
    """A knowledge gap revealed by review decisions, waiting for ops to accept or reject it."""

    class Kind(models.TextChoices):
        BRAND_ALIAS = "brand_alias", "Missing brand alias"
        BRAND_CATEGORY = "brand_category", "Missing brand sells category"
        BRAND_NEW = "brand_new", "Missing brand"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        ACCEPTED = "accepted", "Accepted"
        REJECTED = "rejected", "Rejected"

    # One row per gap, whatever its status: a rejected gap is not suggested again.
    key = models.CharField(max_length=400, unique=True)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    # Empty for BRAND_NEW: the brand does not exist yet, `alias` holds the name people typed.
    brand = models.ForeignKey(
        Brand, null=True, blank=True, on_delete=models.CASCADE, related_name="suggestions"
    )
    category = models.ForeignKey(
        Category, null=True, blank=True, on_delete=models.CASCADE, related_name="suggestions"
    )
    alias = models.CharField(max_length=200, blank=True)
    evidence_count = models.PositiveIntegerField(default=0)
    example_listing_ids = models.JSONField(default=list, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING, db_index=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-evidence_count", "-updated_at"]

    def __str__(self) -> str:
        return self.key


class RerouteJob(models.Model):
    """Re-verification of the open review tasks after a publish (one per knowledge version).

    `planned_task_ids` is what the preview promised would be resolved; the job resolves the open
    knowledge-routed tasks that no longer conflict under the version, reports progress as it goes,
    and records the ones it resolved (`resolved_task_ids`), each audited and undoable.
    """

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    knowledge_version = models.OneToOneField(
        KnowledgeVersion, on_delete=models.CASCADE, related_name="reroute_job"
    )
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED, db_index=True)
    planned_task_ids = models.JSONField(default=list, blank=True)
    total = models.PositiveIntegerField(default=0)
    checked = models.PositiveIntegerField(default=0)
    resolved_task_ids = models.JSONField(default=list, blank=True)
    still_conflicting = models.PositiveIntegerField(default=0)
    skipped_decided = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"re-route after v{self.knowledge_version_id}: {self.status}"

    @property
    def progress_line(self) -> str:
        line = f"{self.checked}/{self.total} open tasks checked, {len(self.resolved_task_ids)} resolved"
        if self.status == self.Status.DONE:
            line += f", {self.still_conflicting} still conflicting"
        return line
