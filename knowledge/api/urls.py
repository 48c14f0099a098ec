"""/api/knowledge/: brands, categories, relations, attribute rules, publish, versions."""

from django.urls import path

from knowledge.graph import api as graph
from knowledge.versions import api as versions

urlpatterns = [
    path("brands/", graph.BrandCollection.as_view(), name="api-knowledge-brands"),
    path("brands/<int:pk>/", graph.BrandItem.as_view(), name="api-knowledge-brand"),
    path("categories/", graph.CategoryCollection.as_view(), name="api-knowledge-categories"),
    path("categories/<int:pk>/", graph.CategoryItem.as_view(), name="api-knowledge-category"),
    path("relations/", graph.RelationCollection.as_view(), name="api-knowledge-relations"),
    path(
        "relations/<int:brand_id>/<int:category_id>/",
        graph.RelationItem.as_view(),
        name="api-knowledge-relation",
    ),
    path("rules/", graph.RuleCollection.as_view(), name="api-knowledge-rules"),
    path("rules/<int:pk>/", graph.RuleItem.as_view(), name="api-knowledge-rule"),
    path("publish/", versions.Publish.as_view(), name="api-knowledge-publish"),
    path("versions/", versions.VersionCollection.as_view(), name="api-knowledge-versions"),
    path("versions/<int:number>/", versions.VersionItem.as_view(), name="api-knowledge-version"),
]
