"""Styled error pages, the favicon, and the read-only Django admin."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client, RequestFactory
from django.urls import reverse

from classifier.models import Listing, ModelVersion
from tests import factories

pytestmark = [pytest.mark.integration, pytest.mark.django_db]


@pytest.fixture(autouse=True)
def _static(settings):
    factories.plain_static_storage(settings)
    settings.DEBUG = False


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_a_forbidden_page_is_styled_and_says_why(auditor):
    response = _client(auditor).get(reverse("model-list"))
    html = response.content.decode()
    assert response.status_code == 403
    assert "<!doctype html>" in html and "css/app.css" in html  # the site's layout, not a bare 403
    assert "You don't have access to this page" in html and "audrey" in html
    assert 'href="/review/"' in html  # the auditor's own navigation is still there


def test_a_missing_page_is_styled(admin_user):
    response = _client(admin_user).get(reverse("model-detail", args=[987654]))
    html = response.content.decode()
    assert response.status_code == 404
    assert "There is nothing at this address" in html and "css/app.css" in html


def test_the_server_error_page_renders_without_a_request_context():
    from django.views.defaults import server_error

    response = server_error(RequestFactory().get("/boom"))
    html = response.content.decode()
    assert response.status_code == 500 and "Something went wrong on our side" in html and "app.css" in html


def test_a_forged_form_gets_the_styled_csrf_page(auditor):
    client = Client(enforce_csrf_checks=True)
    client.force_login(auditor)
    response = client.post(reverse("review-next"))
    assert response.status_code == 403 and "This form could not be accepted" in response.content.decode()


def test_favicon_is_served_at_the_root_and_linked_from_pages(auditor):
    response = Client().get("/favicon.ico")
    assert response.status_code == 200 and response["Content-Type"] == "image/vnd.microsoft.icon"
    assert b"".join(response)[:4] == b"\x00\x00\x01\x00"  # an ICO header
    html = _client(auditor).get(reverse("review-queues")).content.decode()
    assert 'rel="icon"' in html and "favicon.svg" in html


def test_django_admin_lists_the_domain_models_read_only(client):
    boss = User.objects.create_superuser("boss", password="pass-for-tests-1")
    client.force_login(boss)
    task = factories.review_task(title="Admin visible listing")
    index = client.get("/admin/").content.decode()
    for name in ("Listings", "Predictions", "Review tasks", "Review decisions", "Model versions",
                 "Training jobs", "Categories", "Brands", "Knowledge versions"):  # fmt: skip
        assert name in index, name
    listing_url = f"/admin/classifier/listing/{task.listing_id}/change/"
    assert "Admin visible listing" in client.get("/admin/classifier/listing/?q=visible").content.decode()
    page = client.get(listing_url)
    assert page.status_code == 200 and 'name="_save"' not in page.content.decode()  # view only
    assert client.get("/admin/classifier/listing/add/").status_code == 403
    client.post(listing_url, {"title": "hacked", "status": "reviewed"})
    assert Listing.objects.get(pk=task.listing_id).title == "Admin visible listing"
    assert (
        client.get(f"/admin/classifier/modelversion/{task.prediction.model_version_id}/delete/").status_code
        == 403
    )
    assert ModelVersion.objects.filter(pk=task.prediction.model_version_id).exists()
    for path in ("/admin/knowledge/category/", "/admin/knowledge/brand/", "/admin/classifier/auditevent/",
                 "/admin/knowledge/knowledgeversion/", "/admin/classifier/reviewtask/"):  # fmt: skip
        assert client.get(path).status_code == 200, path


def test_people_without_staff_status_cannot_use_the_django_admin(admin_user, auditor):
    response = _client(admin_user).get("/admin/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    auditor.is_staff = True
    auditor.save()
    html = _client(auditor).get("/admin/").content.decode()
    # staff without the admin role see only what their role's permissions grant (auditors: listings)
    assert "Listings" in html and "Model versions" not in html and "Review decisions" not in html


def test_staff_with_the_admin_role_see_every_model_read_only(admin_user):
    admin_user.is_staff = True
    admin_user.save()
    task = factories.review_task(title="Seen by the admin role")
    client = _client(admin_user)
    html = client.get("/admin/").content.decode()
    assert "Listings" in html and "Brands" in html and "Model versions" in html
    assert "Seen by the admin role" in client.get("/admin/classifier/listing/").content.decode()
    assert client.get(f"/admin/classifier/listing/{task.listing_id}/delete/").status_code == 403
