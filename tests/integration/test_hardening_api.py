"""Sign-in lockout, CSV formula escaping, JSON errors under /api/, metrics, media, offline docs.

Issue 13, faults 7 (no throttling/lockout), 8 (formula injection in the brand CSV export),
9 (HTML 500 while the database is down) and 10 (docs blank offline: Swagger UI from a CDN).
"""

from __future__ import annotations

import csv
import io
import re

import pytest
from django.contrib.staticfiles import finders
from django.core.cache import cache
from django.db import connection
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from fusionreview.auth import _key

pytestmark = pytest.mark.integration


@pytest.fixture
def clean_lockouts(ops_user):
    keys = [_key(kind, value) for kind in ("fail-user", "lock-user") for value in ("otto",)]
    keys += [_key(kind, "127.0.0.1") for kind in ("fail-ip", "lock-ip")]
    cache.delete_many(keys)
    yield
    cache.delete_many(keys)


def test_login_page_locks_out_after_five_failures_with_a_clear_message(client, ops_user, clean_lockouts):
    for _ in range(4):
        response = client.post("/accounts/login/", {"username": "otto", "password": "wrong"})
        assert response.status_code == 200
    response = client.post("/accounts/login/", {"username": "otto", "password": "wrong"})
    assert response.status_code == 429 and int(response["Retry-After"]) > 0
    assert "Too many failed sign-in attempts" in response.content.decode()
    # Locked: even the right password is refused until the time is up.
    response = client.post("/accounts/login/", {"username": "otto", "password": "pass-for-tests-1"})
    assert response.status_code == 429 and "_auth_user_id" not in client.session
    # Time up (the lock expires in the cache): the right password works again.
    cache.delete(_key("lock-user", "otto"))
    response = client.post("/accounts/login/", {"username": "otto", "password": "pass-for-tests-1"})
    assert response.status_code == 302


def test_token_endpoint_locks_out_with_json_and_retry_after(ops_user, clean_lockouts):
    api = APIClient()
    for _ in range(4):
        assert api.post("/api/auth/token/", {"username": "otto", "password": "nope"}).status_code == 400
    response = api.post("/api/auth/token/", {"username": "otto", "password": "nope"})
    assert response.status_code == 429 and int(response["Retry-After"]) > 0
    body = response.json()
    assert body["code"] == "locked_out" and "Too many failed sign-in attempts" in body["detail"]
    assert (
        api.post("/api/auth/token/", {"username": "otto", "password": "pass-for-tests-1"}).status_code == 429
    )
    cache.delete(_key("lock-user", "otto"))
    assert (
        api.post("/api/auth/token/", {"username": "otto", "password": "pass-for-tests-1"}).status_code == 200
    )


def test_a_successful_sign_in_resets_the_failure_count(client, ops_user, clean_lockouts):
    for _ in range(4):
        client.post("/accounts/login/", {"username": "otto", "password": "wrong"})
    assert (
        client.post("/accounts/login/", {"username": "otto", "password": "pass-for-tests-1"}).status_code
        == 302
    )
    client.logout()
    for _ in range(4):
        assert client.post("/accounts/login/", {"username": "otto", "password": "wrong"}).status_code == 200


@pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t", "\r"])
def test_brand_csv_export_escapes_formula_cells(start, admin_user):
    from fusionreview.csvsafe import csv_safe, csv_unescape
    from knowledge.graph.brands import brand_create
    from knowledge.importexport.brands_csv import brands_csv_export

    brand = brand_create(
        actor=admin_user,
        name=f'{start}HYPERLINK("http://evil.example","x")',
        aliases=[f"{start}cmd|' /C calc'!A0"],
    )
    rows = list(csv.reader(io.StringIO(brands_csv_export())))
    cells = [cell for row in rows[1:] for cell in row if cell]
    assert cells, rows
    for cell in cells:
        assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), repr(cell)
    # The cell reads back as the stored name (the editor already strips a leading tab/CR).
    exported = next(row for row in rows[1:] if csv_unescape(row[0]) == brand.name)
    assert exported[0] == csv_safe(brand.name)


def test_brand_csv_export_then_import_round_trips_formula_looking_names(admin_user):
    """The export's leading ' is removed on import: '=Cool' comes back as the brand =Cool, not a new one."""
    from knowledge.graph.brands import brand_create
    from knowledge.importexport.brands_csv import brands_csv_export, brands_csv_import
    from knowledge.models import Brand, BrandAlias

    for name, aliases in [
        ("=Cool", ["=Cool Wear"]),
        ("+Plus", ["+Plus Size"]),
        ("-Minus", []),
        ("@At", ["@at.home"]),
        ("'=Quoted", []),  # a name that really starts with a quote keeps it
        ("O'Neill", ["'Neill"]),
        ("Plain", ["Plain Co"]),
    ]:
        brand_create(actor=admin_user, name=name, aliases=aliases)

    def state() -> tuple[set, set]:
        return (
            set(Brand.objects.filter(is_active=True).values_list("name", flat=True)),
            set(BrandAlias.objects.values_list("brand__name", "alias")),
        )

    before = state()
    exported = brands_csv_export()
    assert "'=Cool," in exported and "''=Quoted," in exported  # still escaped for spreadsheets
    counts = brands_csv_import(data=exported.encode(), actor=admin_user)
    assert counts["created"] == 0 and counts["aliases"] == 0, counts
    assert state() == before
    assert {"=Cool", "+Plus", "-Minus", "@At", "'=Quoted"} <= before[0]
    # ...and a second export is byte for byte the first.
    assert brands_csv_export() == exported


def test_plain_brand_names_are_exported_unchanged(admin_user):
    from knowledge.graph.brands import brand_create
    from knowledge.importexport.brands_csv import brands_csv_export

    brand_create(actor=admin_user, name="United Colors of Benetton", aliases=["UCB"])
    assert "United Colors of Benetton,UCB," in brands_csv_export()


@pytest.fixture
def database_outage(transactional_db):
    """Point this process's connection at a cut TCP proxy: a real PostgreSQL outage for it alone."""
    from tests.faults.proxy import TcpProxy

    settings_dict = connection.settings_dict
    proxy = TcpProxy(
        target=(settings_dict.get("HOST") or "127.0.0.1", int(settings_dict.get("PORT") or 5432))
    )
    proxy.start()
    saved = (settings_dict.get("HOST"), settings_dict.get("PORT"))

    def cut() -> None:
        connection.close()
        settings_dict["HOST"], settings_dict["PORT"] = "127.0.0.1", proxy.port
        proxy.cut()

    yield cut
    connection.close()
    settings_dict["HOST"], settings_dict["PORT"] = saved
    proxy.stop()


def test_api_answers_json_503_with_retry_after_while_the_database_is_down(database_outage, ops_user):
    token = Token.objects.create(user=ops_user).key
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert api.get("/api/listings/").status_code == 200
    database_outage()
    for path in ("/api/listings/", "/api/listings/1/"):
        response = api.get(path)
        assert response.status_code == 503, response.content[:300]
        assert response["Content-Type"] == "application/json" and int(response["Retry-After"]) > 0
        body = response.json()
        assert body["code"] == "service_unavailable" and body["service"] == "database"


def test_unknown_api_urls_answer_json_not_html(client):
    response = client.get("/api/no-such-thing/")
    assert response.status_code == 404 and response["Content-Type"] == "application/json"
    assert response.json() == {"detail": "Not Found", "code": "not_found", "errors": {}}


def test_drf_errors_carry_a_code(ops_user):
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=ops_user).key}")
    body = api.get("/api/listings/987654/").json()
    assert body["code"] == "not_found" and body["detail"]
    body = APIClient().get("/api/listings/").json()
    assert body["code"] == "not_authenticated"


def test_metrics_need_a_token_or_an_admin(client, admin_user, nobody, settings):
    settings.METRICS_TOKEN = "scrape-me"
    assert client.get("/metrics").status_code == 403
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 403
    response = client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-me")
    assert response.status_code == 200
    text = response.content.decode()
    for name in (
        "fusion_listings{",
        "fusion_review_open{",
        "fusion_review_decisions_per_hour",
        "fusion_model_version",
    ):
        assert name in text, name
    client.force_login(nobody)
    assert client.get("/metrics").status_code == 403
    client.force_login(admin_user)
    assert client.get("/metrics").status_code == 200


def test_media_files_need_a_role_that_may_see_listings(client, ops_user, nobody, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    (tmp_path / "listings").mkdir()
    (tmp_path / "listings" / "p.jpg").write_bytes(b"\xff\xd8\xff\xe0fake")
    response = client.get("/media/listings/p.jpg")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]
    client.force_login(nobody)
    assert client.get("/media/listings/p.jpg").status_code == 403
    client.force_login(ops_user)
    response = client.get("/media/listings/p.jpg")
    assert response.status_code == 200 and response["X-Content-Type-Options"] == "nosniff"
    assert client.get("/media/../settings.py").status_code in (400, 404)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=ops_user).key}")
    assert api.get("/media/listings/p.jpg").status_code == 200


@pytest.mark.parametrize("path", ["/api/docs/", "/api/redoc/"])
def test_api_docs_load_their_scripts_from_this_server_not_a_cdn(client, ops_user, path):
    client.force_login(ops_user)
    html = client.get(path).content.decode()
    assert "cdn.jsdelivr" not in html and "unpkg.com" not in html and "cdnjs" not in html
    scripts = re.findall(r'src="(/static/[^"]+\.js)"', html)
    assert scripts, html[:1500]
    for src in scripts:
        assert finders.find(src.removeprefix("/static/")), src
