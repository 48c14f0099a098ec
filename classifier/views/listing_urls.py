from django.urls import path

from classifier.views import listings

urlpatterns = [
    path("listings/", listings.listing_list, name="listing-list"),
]
