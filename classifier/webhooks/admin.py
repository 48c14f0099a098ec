"""Admins manage webhook endpoints here; events and deliveries are read-only (with "send again")."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages

from classifier.webhooks import services
from classifier.webhooks.models import EventType, WebhookDelivery, WebhookEndpoint, WebhookEvent
from classifier.webhooks.tasks import webhook_deliver
from fusionreview.dispatch import task_dispatch
from fusionreview.roles import Perm


def _manager(request) -> bool:
    """Staff with the admin role manage webhooks, without per-model grants (like the rest of the admin)."""

    user = request.user
    return bool(user.is_active and user.is_staff and user.has_perm(Perm.MANAGE_MODELS))


class _RoleAdmin(admin.ModelAdmin):
    def has_module_permission(self, request) -> bool:
        return _manager(request) or super().has_module_permission(request)

    def has_view_permission(self, request, obj=None) -> bool:
        return _manager(request) or super().has_view_permission(request, obj)


class EndpointForm(forms.ModelForm):
    url = forms.URLField(max_length=500, assume_scheme="https")
    events = forms.MultipleChoiceField(choices=EventType.choices, widget=forms.CheckboxSelectMultiple)

    class Meta:
        model = WebhookEndpoint
        fields = ["name", "url", "events", "is_active"]


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(_RoleAdmin):
    form = EndpointForm
    list_display = ["name", "url", "events", "is_active", "created_at"]
    list_filter = ["is_active"]
    readonly_fields = ["secret", "created_by", "created_at"]
    fieldsets = [
        (None, {"fields": ["name", "url", "events", "is_active"]}),
        (
            "Signature",
            {
                "fields": ["secret", "created_by", "created_at"],
                "description": "Every POST carries X-FusionReview-Signature: t=<unix time>,v1=<hex "
                "HMAC-SHA256(secret, '<t>.' + raw body)>. Verify it and refuse timestamps older than "
                "5 minutes; see classifier/webhooks/README.md.",
            },
        ),
    ]

    def has_add_permission(self, request) -> bool:
        return _manager(request) or super().has_add_permission(request)

    def has_change_permission(self, request, obj=None) -> bool:
        return _manager(request) or super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None) -> bool:
        return _manager(request) or super().has_delete_permission(request, obj)

    def save_model(self, request, obj: WebhookEndpoint, form, change: bool) -> None:
        if not change:
            obj.secret = services.webhook_secret_new()
            obj.created_by = request.user
        obj.events = sorted(set(obj.events or []))
        super().save_model(request, obj, form, change)


@admin.register(WebhookEvent)
class WebhookEventAdmin(_RoleAdmin):
    list_display = ["id", "type", "audit_event_id", "occurred_at"]
    list_filter = ["type"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.action(description="Send again now", permissions=["send"])
def send_again(modeladmin, request, queryset) -> None:

    count = 0
    for delivery in queryset:
        if services.webhook_delivery_retry_now(delivery=delivery):
            task_dispatch(webhook_deliver, args=[delivery.pk])
            count += 1
    messages.success(request, f"{count} deliveries queued again.")


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(_RoleAdmin):
    list_display = ["id", "endpoint", "event", "status", "attempts", "last_status_code", "next_attempt_at"]
    list_filter = ["status", "endpoint"]
    list_select_related = ["endpoint", "event"]
    actions = [send_again]

    def has_send_permission(self, request) -> bool:
        return _manager(request) or request.user.is_superuser

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
