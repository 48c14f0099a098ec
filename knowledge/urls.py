from django.urls import path

from knowledge import views

urlpatterns = [
    path("", views.tree, name="knowledge-tree"),
    path("pending-badge", views.pending_badge, name="knowledge-pending-badge"),
    path("categories/new", views.category_create, name="knowledge-category-create"),
    path("categories/<int:pk>/", views.category_detail, name="knowledge-category"),
    path("categories/<int:pk>/edit", views.category_edit, name="knowledge-category-edit"),
    path("categories/<int:pk>/move", views.category_move, name="knowledge-category-move"),
    path("categories/<int:pk>/merge", views.category_merge, name="knowledge-category-merge"),
    path("categories/<int:pk>/delete", views.category_delete, name="knowledge-category-delete"),
    path("categories/<int:pk>/attributes", views.attribute_save, name="knowledge-attribute-save"),
    path("attributes/<int:pk>/delete", views.attribute_delete, name="knowledge-attribute-delete"),
    path("brands/", views.brand_list, name="knowledge-brands"),
    path("brands/new", views.brand_create, name="knowledge-brand-create"),
    path("brands/<int:pk>/", views.brand_detail, name="knowledge-brand"),
    path("brands/<int:pk>/edit", views.brand_edit, name="knowledge-brand-edit"),
    path("brands/<int:pk>/categories", views.brand_categories, name="knowledge-brand-categories"),
    path("brands/<int:pk>/merge", views.brand_merge, name="knowledge-brand-merge"),
    path("publish/", views.publish, name="knowledge-publish"),
    path("discard", views.discard, name="knowledge-discard"),
    path("versions/", views.versions, name="knowledge-versions"),
    path("versions/<int:number>/", views.version_detail, name="knowledge-version"),
    path("versions/<int:number>/restore", views.version_restore, name="knowledge-version-restore"),
    path("changes/", views.changes, name="knowledge-changes"),
    path("suggestions/", views.suggestions, name="knowledge-suggestions"),
    path("suggestions/refresh", views.suggestions_refresh, name="knowledge-suggestions-refresh"),
    path(
        "suggestions/<int:pk>/<str:decision>",
        views.suggestion_decide,
        name="knowledge-suggestion-decide",
    ),
    path("noise/", views.noise_terms, name="knowledge-noise"),
    path("import/", views.import_export, name="knowledge-import"),
    path("export.json", views.export_json, name="knowledge-export-json"),
    path("export-brands.csv", views.export_brands_csv, name="knowledge-export-brands"),
]
