from django.urls import path

from knowledge.graph import brand_views, category_views
from knowledge.importexport import views as importexport_views
from knowledge.suggestions import views as suggestions_views
from knowledge.versions import views as versions_views

urlpatterns = [
    path("", category_views.tree, name="knowledge-tree"),
    path("pending-badge", category_views.pending_badge, name="knowledge-pending-badge"),
    path("categories/new", category_views.category_create, name="knowledge-category-create"),
    path("categories/<int:pk>/", category_views.category_detail, name="knowledge-category"),
    path("categories/<int:pk>/edit", category_views.category_edit, name="knowledge-category-edit"),
    path("categories/<int:pk>/move", category_views.category_move, name="knowledge-category-move"),
    path("categories/<int:pk>/merge", category_views.category_merge, name="knowledge-category-merge"),
    path("categories/<int:pk>/delete", category_views.category_delete, name="knowledge-category-delete"),
    path("categories/<int:pk>/attributes", category_views.attribute_save, name="knowledge-attribute-save"),
    path("attributes/<int:pk>/delete", category_views.attribute_delete, name="knowledge-attribute-delete"),
    path("brands/", brand_views.brand_list, name="knowledge-brands"),
    path("brands/new", brand_views.brand_create, name="knowledge-brand-create"),
    path("brands/<int:pk>/", brand_views.brand_detail_page, name="knowledge-brand"),
    path("brands/<int:pk>/edit", brand_views.brand_edit, name="knowledge-brand-edit"),
    path("brands/<int:pk>/categories", brand_views.brand_categories, name="knowledge-brand-categories"),
    path("brands/<int:pk>/merge", brand_views.brand_merge, name="knowledge-brand-merge"),
    path("publish/", versions_views.publish, name="knowledge-publish"),
    path("discard", versions_views.discard, name="knowledge-discard"),
    path("versions/", versions_views.versions, name="knowledge-versions"),
    path("versions/<int:number>/", versions_views.version_detail, name="knowledge-version"),
    path("versions/<int:number>/restore", versions_views.version_restore, name="knowledge-version-restore"),
    path(
        "versions/<int:number>/reroute-undo",
        versions_views.version_reroute_undo,
        name="knowledge-version-reroute-undo",
    ),
    path("changes/", versions_views.changes, name="knowledge-changes"),
    path("suggestions/", suggestions_views.suggestions, name="knowledge-suggestions"),
    path("suggestions/refresh", suggestions_views.suggestions_refresh, name="knowledge-suggestions-refresh"),
    path(
        "suggestions/accept-bulk",
        suggestions_views.suggestions_accept_bulk,
        name="knowledge-suggestions-accept-bulk",
    ),
    path(
        "suggestions/<int:pk>/<str:decision>",
        suggestions_views.suggestion_decide,
        name="knowledge-suggestion-decide",
    ),
    path("noise/", category_views.noise_terms, name="knowledge-noise"),
    path("import/", importexport_views.import_export, name="knowledge-import"),
    path("export.json", importexport_views.export_json, name="knowledge-export-json"),
    path("export-brands.csv", importexport_views.export_brands_csv, name="knowledge-export-brands"),
]
