"""The three roles and what each may do.

Groups are named after the roles; each view and endpoint checks a permission, never a group
name, so a deployment can grant a permission to a user directly.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import Any

from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.decorators import login_required, permission_required
from django.contrib.auth.models import Group, Permission, User
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.http import HttpRequest, HttpResponseBase
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.views import APIView

# A Django view function: request (and URL arguments) in, response out.
ViewFunc = Callable[..., HttpResponseBase]


class Role(StrEnum):
    AUDITOR = "auditor"
    OPS = "ops"
    ADMIN = "admin"


class Perm(StrEnum):
    """Permission codenames (app label included), one per capability."""

    INGEST = "classifier.ingest_listing"
    VIEW_LISTINGS = "classifier.view_listing"
    REVIEW = "classifier.review_listing"
    MANAGE_MODELS = "classifier.manage_models"
    VIEW_KNOWLEDGE = "knowledge.view_knowledge"
    EDIT_KNOWLEDGE = "knowledge.edit_knowledge"


ROLE_PERMISSIONS: dict[Role, tuple[Perm, ...]] = {
    Role.AUDITOR: (Perm.VIEW_LISTINGS, Perm.REVIEW, Perm.VIEW_KNOWLEDGE),
    Role.OPS: (Perm.VIEW_LISTINGS, Perm.REVIEW, Perm.VIEW_KNOWLEDGE, Perm.EDIT_KNOWLEDGE, Perm.INGEST),
    Role.ADMIN: tuple(Perm),
}


def roles_bootstrap() -> None:
    """Create the role groups and give each exactly its permissions (safe to run again)."""
    for role, perms in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=role.value)
        wanted = []
        for perm in perms:
            app_label, codename = perm.value.split(".")
            wanted.append(Permission.objects.get(content_type__app_label=app_label, codename=codename))
        group.permissions.set(wanted)


def user_roles(user: Any) -> list[str]:
    if not getattr(user, "is_authenticated", False):
        return []
    return sorted(user.groups.values_list("name", flat=True))


def role_context(request: HttpRequest) -> dict[str, Any]:
    """Template context: which parts of the navigation this user may see."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"can": {}}
    return {
        "can": {
            "review": user.has_perm(Perm.REVIEW),
            "view_listings": user.has_perm(Perm.VIEW_LISTINGS),
            "edit_knowledge": user.has_perm(Perm.EDIT_KNOWLEDGE),
            "view_knowledge": user.has_perm(Perm.VIEW_KNOWLEDGE),
            "manage_models": user.has_perm(Perm.MANAGE_MODELS),
            "ingest": user.has_perm(Perm.INGEST),
        }
    }


class PermissionBackend(ModelBackend):
    """Permissions as Django's ModelBackend answers them, but a user's set (their own and their
    groups') costs one query instead of two: every page checks a permission, so that is a query per
    request saved. Same answers: inactive users have none, superusers all, cached on the user for
    the request (the attribute ModelBackend reads too, so the ModelBackend listed after this one
    queries nothing more). Sign-in stays with ModelBackend: sessions keep naming it."""

    def authenticate(self, request: Any, username: Any = None, password: Any = None, **kwargs: Any) -> None:
        return None

    def get_all_permissions(self, user_obj: Any, obj: Any = None) -> set[str]:
        if not user_obj.is_active or user_obj.is_anonymous or obj is not None:
            return set()
        if not hasattr(user_obj, "_perm_cache"):
            tables = {
                "perm": Permission._meta.db_table,
                "ct": ContentType._meta.db_table,
                "user_perm": User.user_permissions.through._meta.db_table,
                "group_perm": Group.permissions.through._meta.db_table,
                "user_group": User.groups.through._meta.db_table,
            }
            sql = 'SELECT ct."app_label", p."codename" FROM "{perm}" p JOIN "{ct}" ct ON ct."id" = p."content_type_id"'
            params: list[int] = []
            if not user_obj.is_superuser:
                sql += (
                    ' WHERE p."id" IN (SELECT "permission_id" FROM "{user_perm}" WHERE "user_id" = %s'
                    ' UNION SELECT gp."permission_id" FROM "{group_perm}" gp'
                    ' JOIN "{user_group}" ug ON ug."group_id" = gp."group_id" WHERE ug."user_id" = %s)'
                )
                params = [user_obj.pk, user_obj.pk]
            with connection.cursor() as cursor:
                cursor.execute(sql.format(**tables), params)
                user_obj._perm_cache = {
                    f"{app_label}.{codename}" for app_label, codename in cursor.fetchall()
                }
        perms: set[str] = user_obj._perm_cache
        return perms


def perm_required(perm: Perm) -> Callable[[ViewFunc], ViewFunc]:
    """View decorator: anonymous visitors go to the login page, logged-in users without `perm` get 403."""

    def decorator(view: ViewFunc) -> ViewFunc:
        return login_required(permission_required(perm.value, raise_exception=True)(view))

    return decorator


def has_perm(perm: Perm) -> type[BasePermission]:
    """A DRF permission class requiring one capability: `permission_classes = [has_perm(Perm.INGEST)]`."""

    class _HasPerm(BasePermission):
        message = f"You need the '{perm.value}' permission."

        def has_permission(self, request: Request, view: APIView) -> bool:
            return bool(request.user and request.user.is_authenticated and request.user.has_perm(perm))

    _HasPerm.__name__ = f"HasPerm_{perm.name}"
    return _HasPerm
