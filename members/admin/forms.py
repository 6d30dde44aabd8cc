"""Forms behind the staff actions on members. They only collect input; the services decide."""

from typing import Any

from django import forms

from coalition.errors import DomainError, InvalidRequest
from coalition.models import Coalition
from consent.models import ConsentPurpose
from members.admin.search import identifier_mask
from members.models import Member

Textarea = forms.Textarea(attrs={"rows": 3, "cols": 60})


def error_to_form(form: forms.Form, exc: DomainError, fields: dict[str, str] | None = None) -> None:
    """Show a service's refusal on the form: on its field when the service names one."""
    field = exc.field if isinstance(exc, InvalidRequest) else None
    field = (fields or {}).get(field or "", field)
    form.add_error(field if field in form.fields else None, exc.detail)


class MemberEnrolForm(forms.Form):
    coalition = forms.ModelChoiceField(queryset=Coalition.objects.all(), empty_label=None)
    phone = forms.CharField(
        required=False, max_length=40, help_text="Any format; without +country the mall's region."
    )
    email = forms.CharField(required=False, max_length=254)
    card = forms.CharField(
        required=False, max_length=40, help_text="Leave empty to issue a new card number."
    )
    name = forms.CharField(required=False, max_length=200)
    adult = forms.BooleanField(required=False, label="The member declares being 18 or over")
    guardian_name = forms.CharField(
        required=False, max_length=200, help_text="For a member under 18."
    )
    guardian_consent = forms.BooleanField(
        required=False, label="The guardian gave verifiable consent (member under 18)"
    )
    consent_programme = forms.BooleanField(
        required=True,
        label="Consents to the programme",
        help_text="Required: membership is consent to the programme's notice.",
    )
    consent_marketing_mall = forms.BooleanField(required=False, label="Marketing by the mall")
    consent_analytics = forms.BooleanField(required=False, label="Personalisation and analytics")

    # Where the service's field names land on this form.
    SERVICE_FIELDS = {"consents": "consent_programme"}
    FIELDSETS = (
        (None, {"fields": ("coalition", "name")}),
        ("Identifiers", {"fields": ("phone", "email", "card")}),
        ("Age", {"fields": ("adult", "guardian_name", "guardian_consent")}),
        (
            "Consent",
            {"fields": ("consent_programme", "consent_marketing_mall", "consent_analytics")},
        ),
    )

    def consents(self) -> dict[str, bool]:
        data = self.cleaned_data
        return {
            ConsentPurpose.PROGRAMME: bool(data["consent_programme"]),
            ConsentPurpose.MARKETING_MALL: bool(data["consent_marketing_mall"]),
            ConsentPurpose.ANALYTICS: bool(data["consent_analytics"]),
        }

    def enrol_kwargs(self) -> dict[str, Any]:
        data = self.cleaned_data
        return {
            "coalition": data["coalition"],
            "consents": self.consents(),
            "phone": data["phone"].strip() or None,
            "email": data["email"].strip() or None,
            "card": data["card"].strip() or None,
            "name": data["name"],
            "adult": data["adult"],
            "guardian_name": data["guardian_name"],
            "guardian_consent": data["guardian_consent"],
        }


class AdjustPointsForm(forms.Form):
    points = forms.IntegerField(
        help_text="Positive credits the member, negative debits them.",
        min_value=-10_000_000,
        max_value=10_000_000,
    )
    reason = forms.CharField(widget=Textarea, max_length=2000, help_text="Required; audited.")

    def clean_points(self) -> int:
        points: int = self.cleaned_data["points"]
        if points == 0:
            raise forms.ValidationError("An adjustment must move at least one point.")
        return points


class MergeMembersForm(forms.Form):
    survivor = forms.ChoiceField(
        widget=forms.RadioSelect(attrs={"class": "radiolist"}),
        help_text="The other member's balance, lots and identifiers move to this one.",
    )
    reason = forms.CharField(widget=Textarea, max_length=2000, help_text="Required; audited.")

    def __init__(self, *args: Any, members: list[Member], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.members = {str(member.pk): member for member in members}
        survivor = self.fields["survivor"]
        assert isinstance(survivor, forms.ChoiceField)
        survivor.choices = [(str(member.pk), _member_label(member)) for member in members]

    def chosen(self) -> tuple[Member, Member]:
        """(survivor, merged)."""
        survivor = self.members[self.cleaned_data["survivor"]]
        (merged,) = (m for key, m in self.members.items() if key != str(survivor.pk))
        return survivor, merged


def _member_label(member: Member) -> str:
    who = member.name or identifier_mask(
        getattr(member, "primary_kind", None), getattr(member, "primary_value", None)
    )
    balance = getattr(member, "points_balance", None)
    pending = getattr(member, "pending_balance", None)
    return (
        f"{member} — {who} · {balance or 0} points ({pending or 0} pending)"
        f" · enrolled {member.enrolled_at:%d %b %Y}"
    )
