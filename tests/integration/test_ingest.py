"""Ingestion through the API and the CSV import: bad inputs are refused clearly and write nothing."""

from __future__ import annotations

import io
import shutil
import threading
from pathlib import Path

import pytest
from django.core.management import call_command
from PIL import Image
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from classifier.models import Listing
from tests.conftest import jpeg_bytes
from tests.unit.test_listing_validation import png_header_only

pytestmark = pytest.mark.integration


@pytest.fixture
def media_root(tmp_path, settings) -> Path:
    root = tmp_path / "media"
    root.mkdir()
    settings.MEDIA_ROOT = root
    return root


@pytest.fixture
def no_dispatch(monkeypatch):
    """These tests are about ingestion: record what would be queued instead of classifying."""
    sent: list[list[int]] = []
    monkeypatch.setattr(
        "classifier.listings.services.listing_classification_dispatch",
        lambda *, listing_ids: sent.append(list(listing_ids)),
    )
    return sent


def client_for(user) -> APIClient:
    client = APIClient()
    token, _ = Token.objects.get_or_create(user=user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


def upload(data: bytes, name: str = "photo.jpg") -> io.BytesIO:
    handle = io.BytesIO(data)
    handle.name = name
    return handle


def post(client: APIClient, *, image: bytes | None = None, **fields):
    payload = {"source": "shop", "external_id": "A1", "title": "Puma Men Blue Sports Tshirt"}
    payload.update(fields)
    if image is not None:
        payload["image"] = upload(image)
    return client.post("/api/listings/", payload, format="multipart")


def stored_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def test_post_creates_a_listing_then_an_identical_repeat_returns_it(ops_user, media_root, no_dispatch):
    client = client_for(ops_user)
    image = jpeg_bytes((90, 120))
    first = post(client, image=image, attributes='{"gender": "Men"}', description="cotton")
    assert first.status_code == 201, first.content
    body = first.json()
    assert body["status"] == "queued" and body["attributes"] == {"gender": "Men"}
    assert (body["image_width"], body["image_height"]) == (90, 120)
    assert body["prediction"] is None and body["review"] is None
    assert no_dispatch == [[body["id"]]]
    again = post(client, image=image, description="cotton")
    assert again.status_code == 200 and again.json()["id"] == body["id"]
    assert Listing.objects.count() == 1 and len(stored_files(media_root)) == 1


def test_same_external_id_with_different_content_is_a_conflict_that_changes_nothing(
    ops_user, media_root, no_dispatch
):
    client = client_for(ops_user)
    assert post(client, image=jpeg_bytes()).status_code == 201
    before = Listing.objects.get()
    response = post(client, image=jpeg_bytes(colour=(0, 0, 255)), title="Another title")
    assert response.status_code == 409
    assert "already exists" in response.json()["detail"] and "title" in response.json()["detail"]
    after = Listing.objects.get()
    assert (after.title, after.image_sha256, after.image.name) == (
        before.title,
        before.image_sha256,
        before.image.name,
    )
    assert len(stored_files(media_root)) == 1


def _bad_inputs() -> list[tuple[str, dict, str, str]]:
    good = jpeg_bytes((300, 300), (30, 120, 60))
    return [
        ("zero-byte", {"image": b""}, "image", "empty"),
        ("non-image", {"image": b"%PDF-1.4 definitely not a photo" * 20}, "image", "not an image"),
        ("truncated", {"image": good[: len(good) // 2]}, "image", "corrupt or truncated"),
        ("corrupt", {"image": _corrupt_png()}, "image", "corrupt"),
        ("bomb", {"image": png_header_only(30_000, 30_000)}, "image", "pixels"),
        ("gif", {"image": _gif()}, "image", "not supported"),
        ("empty title", {"image": good, "title": "   "}, "title", "must not be empty"),
        ("10k title", {"image": good, "title": "x" * 10_000}, "title", "over the limit of 300"),
        ("no image", {}, "image", "no file was submitted"),
        ("bad attributes", {"image": good, "attributes": "{not json"}, "attributes", "JSON"),
    ]


def _corrupt_png() -> bytes:
    """A PNG whose header is fine but whose compressed pixel data is garbled mid-stream."""
    import random

    rng = random.Random(7)
    image = Image.frombytes("RGB", (64, 64), bytes(rng.randrange(256) for _ in range(64 * 64 * 3)))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(64)
    return bytes(data)


def _gif() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="GIF")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("case", "fields", "field", "words"), _bad_inputs(), ids=[c[0] for c in _bad_inputs()]
)
def test_bad_input_gets_a_clear_400_and_writes_nothing(
    ops_user, media_root, no_dispatch, case, fields, field, words
):
    response = post(client_for(ops_user), **fields)
    assert response.status_code == 400, response.content
    body = response.json()
    assert field in body["errors"], body
    assert words.lower() in body["detail"].lower() and body["detail"].startswith(field)
    assert Listing.objects.count() == 0
    assert stored_files(media_root) == []
    assert no_dispatch == []


def test_oversized_upload_is_refused_naming_the_limit(ops_user, media_root, no_dispatch, settings):
    settings.MAX_IMAGE_BYTES = 4096
    response = post(client_for(ops_user), image=jpeg_bytes((64, 64)) + b"\0" * 8000)
    assert response.status_code == 400 and "4,096" in response.json()["detail"]
    assert Listing.objects.count() == 0 and stored_files(media_root) == []


def test_no_token_is_401_and_an_auditor_cannot_post(auditor, media_root, no_dispatch):
    anonymous = APIClient()
    assert post(anonymous, image=jpeg_bytes()).status_code == 401
    assert anonymous.get("/api/listings/").status_code == 401
    as_auditor = client_for(auditor)
    assert post(as_auditor, image=jpeg_bytes()).status_code == 403
    assert as_auditor.get("/api/listings/").status_code == 200  # auditors may read
    assert Listing.objects.count() == 0


def test_a_user_without_a_role_cannot_read(nobody):
    assert client_for(nobody).get("/api/listings/").status_code == 403


def test_token_endpoint_hands_out_the_users_token(ops_user):
    response = APIClient().post("/api/auth/token/", {"username": "otto", "password": "pass-for-tests-1"})
    assert response.status_code == 200 and response.json()["token"] == Token.objects.get(user=ops_user).key
    assert APIClient().post("/api/auth/token/", {"username": "otto", "password": "nope"}).status_code == 400


def test_list_filters_by_status_and_paginates(ops_user, media_root, no_dispatch):
    client = client_for(ops_user)
    for i in range(3):
        assert post(client, image=jpeg_bytes(colour=(i, 0, 0)), external_id=f"L{i}").status_code == 201
    Listing.objects.filter(external_id="L0").update(status=Listing.Status.ACCEPTED)
    page = client.get("/api/listings/", {"page_size": 2}).json()
    assert page["count"] == 3 and len(page["results"]) == 2 and page["next"]
    accepted = client.get("/api/listings/", {"status": "accepted"}).json()
    assert [r["external_id"] for r in accepted["results"]] == ["L0"]
    assert client.get("/api/listings/", {"status": "bogus"}).status_code == 400
    detail = client.get(f"/api/listings/{accepted['results'][0]['id']}/")
    assert detail.status_code == 200 and detail.json()["status"] == "accepted"
    assert client.get("/api/listings/999999/").status_code == 404


def test_schema_documents_the_listing_endpoints(admin_user):
    client = APIClient()
    client.force_authenticate(admin_user)
    schema = client.get("/api/schema/", {"format": "json"}).json()
    assert {"/api/listings/", "/api/listings/{id}/", "/api/auth/token/"} <= set(schema["paths"])
    post_op = schema["paths"]["/api/listings/"]["post"]
    assert {"201", "200", "400", "409"} <= set(post_op["responses"])


@pytest.mark.django_db(transaction=True)
def test_concurrent_identical_posts_make_one_row(ops_user, media_root, no_dispatch):
    from django.db import connection

    image = jpeg_bytes((50, 50))
    barrier = threading.Barrier(4)
    codes: list[int] = []

    def worker() -> None:
        try:
            client = client_for(ops_user)
            barrier.wait()
            codes.append(post(client, image=image, external_id="RACE").status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(codes) == [200, 200, 200, 201]
    assert Listing.objects.filter(external_id="RACE").count() == 1
    assert len(stored_files(media_root)) == 1  # the losers' files were removed


def test_import_reports_malformed_rows_by_line_and_imports_the_rest(
    db, data_dir, tmp_path, media_root, no_dispatch
):
    import csv

    with open(data_dir / "catalogue.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))[:3]
    folder = tmp_path / "cat"
    (folder / "images").mkdir(parents=True)
    for row in rows:
        shutil.copy(data_dir / row["image"], folder / row["image"])
    (folder / "images" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 broken")
    header = list(rows[0].keys())
    lines = [",".join(header)]
    for row in rows:  # lines 2-4: good
        lines.append(",".join(f'"{row[h]}"' for h in header))
    bad = dict(rows[0], id="900", title="   ")  # line 5: empty title
    lines.append(",".join(f'"{bad[h]}"' for h in header))
    bad = dict(rows[0], id="901", image="images/missing.jpg")  # line 6: missing image
    lines.append(",".join(f'"{bad[h]}"' for h in header))
    bad = dict(rows[0], id="902", image="images/corrupt.jpg")  # line 7: corrupt image
    lines.append(",".join(f'"{bad[h]}"' for h in header))
    lines.append('"903","Too short"')  # line 8: missing columns
    body = ("\n".join(lines) + "\n").encode() + b'"904","Caf\xe9 latin-1 title",x\n'  # line 9: bad encoding
    (folder / "catalogue.csv").write_bytes(body)

    out = io.StringIO()
    call_command(
        "import_catalogue", str(folder / "catalogue.csv"), "--source", "t", "--no-progress", stdout=out
    )
    report = out.getvalue()
    assert "3 listings imported" in report and "5 rows rejected" in report
    assert "line 5: title: must not be empty" in report
    assert "line 6: image: images/missing.jpg not found" in report
    assert "line 7: image:" in report and "corrupt" in report
    assert "line 8: missing column(s)" in report
    assert "line 9: not valid UTF-8" in report
    assert Listing.objects.filter(source="t").count() == 3
    assert len(stored_files(media_root)) == 3

    again = io.StringIO()
    call_command(
        "import_catalogue", str(folder / "catalogue.csv"), "--source", "t", "--no-progress", stdout=again
    )
    assert "0 listings imported, 3 already present" in again.getvalue()
    assert Listing.objects.filter(source="t").count() == 3
