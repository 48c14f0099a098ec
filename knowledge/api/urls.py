"""/api/knowledge/: brands, categories, relations, attribute rules, publish, versions."""

from django.urls import path

from knowledge.api import views

urlpatterns = [
    path("brands/", views.BrandCollection.as_view(), name="api-knowledge-brands"),
    path("brands/<int:pk>/", views.BrandItem.as_view(), name="api-knowledge-brand"),
    path("categories/", views.CategoryCollection.as_view(), name="api-knowledge-categories"),
    path("categories/<int:pk>/", views.CategoryItem.as_view(), name="api-knowledge-category"),
    path("relations/", views.RelationCollection.as_view(), name="api-knowledge-relations"),
    path(
        "relations/<int:brand_id>/<int:category_id>/",
        views.RelationItem.as_view(),
        name="api-knowledge-relation",
    ),
    path("rules/", views.RuleCollection.as_view(), name="api-knowledge-rules"),
    path("rules/<int:pk>/", views.RuleItem.as_view(), name="api-knowledge-rule"),
    path("publish/", views.Publish.as_view(), name="api-knowledge-publish"),
    path("versions/", views.VersionCollection.as_view(), name="api-knowledge-versions"),
    path("versions/<int:number>/", views.VersionItem.as_view(), name="api-knowledge-version"),
]
