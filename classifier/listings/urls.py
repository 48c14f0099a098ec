"""Listing pages: the list and one listing."""

from django.urls import path

from classifier.listings import views as listings

urlpatterns = [
    path("listings/", listings.listing_list, name="listing-list"),
    path("listings/<int:pk>/", listings.listing_detail, name="listing-detail"),
]
