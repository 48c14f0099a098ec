"""Forms of the knowledge editor: they only check shapes; the rules live in the services."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django import forms

from knowledge.graph.selectors import category_choices
from knowledge.models import Brand, Category

REASON_HELP = "Why (goes into the change log)"


def _category_field(
    *, required: bool = True, label: str = "Category", empty: str = ""
) -> forms.TypedChoiceField:
    choices = [(pk, label_) for pk, label_ in category_choices()]
    # A blank first choice: a required picker must not silently default to the first category.
    choices = [("", empty or ("— top level —" if not required else "— pick a category —")), *choices]
    return forms.TypedChoiceField(
        label=label, choices=choices, coerce=int, required=required, empty_value=None
    )


class VersionedForm(forms.Form):
    version = forms.IntegerField(widget=forms.HiddenInput, min_value=1)
    reason = forms.CharField(required=False, max_length=1000, label=REASON_HELP)


class NodeEditForm(VersionedForm):
    """Rename, describe and re-alias a category or a brand, at the version the page showed."""

    name = forms.CharField(max_length=1000)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}), max_length=5000)
    aliases = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 4}), label="Aliases (one per line, any script)"
    )

    @classmethod
    def for_node(cls, node: Category | Brand, aliases: Iterable[str]) -> NodeEditForm:
        initial = {"version": node.version, "name": node.name, "description": node.description}
        return cls(initial={**initial, "aliases": "\n".join(aliases)})


class CategoryEditForm(NodeEditForm):
    pass


class CategoryMoveForm(VersionedForm):
    def __init__(self, *args, category: Category | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["parent"] = _category_field(required=False, label="Move under")


class CategoryMergeForm(forms.Form):
    reason = forms.CharField(required=False, max_length=1000, label=REASON_HELP)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["target"] = _category_field(label="Merge into")


class CategoryCreateForm(forms.Form):
    name = forms.CharField(max_length=1000)
    description = forms.CharField(required=False, max_length=5000)
    aliases = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 2}), label="Aliases (one per line)"
    )
    reason = forms.CharField(required=False, max_length=1000, label=REASON_HELP)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["parent"] = _category_field(required=False, label="Parent")
        self.order_fields(["parent", "name", "description", "aliases", "reason"])


class AttributeForm(forms.Form):
    name = forms.CharField(
        max_length=1000, widget=forms.TextInput(attrs={"placeholder": "attribute, e.g. audience"})
    )
    allowed_values = forms.CharField(
        required=False,
        label="Allowed values (comma separated)",
        max_length=5000,
        widget=forms.TextInput(attrs={"placeholder": "allowed values: Men, Women"}),
    )
    rule = forms.ChoiceField(
        choices=[
            ("", "plausible values only"),
            ("required", "category requires it"),
            ("excluded", "category excludes it"),
        ],
        required=False,
    )
    reason = forms.CharField(required=False, max_length=1000, label=REASON_HELP)


class BrandEditForm(NodeEditForm):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["aliases"].widget.attrs["rows"] = 5  # brands have more spellings


class BrandCreateForm(forms.Form):
    name = forms.CharField(max_length=1000)
    aliases = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 2}), label="Aliases (one per line)"
    )
    reason = forms.CharField(required=False, max_length=1000, label=REASON_HELP)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["category"] = _category_field(required=False, label="Sells (optional)", empty="—")


class BrandCategoryForm(forms.Form):
    reason = forms.CharField(required=False, max_length=1000)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["category"] = _category_field(label="Sells")


class BrandMergeForm(forms.Form):
    target = forms.CharField(max_length=200, label="Merge into brand (name)")
    reason = forms.CharField(required=False, max_length=1000, label=REASON_HELP)


class PublishForm(forms.Form):
    reason = forms.CharField(max_length=1000, label="Why publish (goes into the version history)")


class NoiseTermForm(forms.Form):
    term = forms.CharField(max_length=1000)
    weight = forms.FloatField(min_value=0.0, max_value=1.0, initial=0.1)


class ImportForm(forms.Form):
    kind = forms.ChoiceField(
        choices=[
            ("brands-csv", "Brands CSV (name,aliases,categories)"),
            ("google-taxonomy", "Google product taxonomy (text)"),
            ("json", "Graph JSON export"),
        ]
    )
    file = forms.FileField()
    root = forms.CharField(
        required=False, max_length=120, label="Taxonomy: put under this top node (optional)"
    )
