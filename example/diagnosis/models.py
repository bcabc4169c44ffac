from django.conf import settings
from django.db import models

from diagnosis.categories import CATEGORIES


class DiagnosisRecord(models.Model):
    """The outcome of one authenticated user's diagnosis.

    Deliberately minimal: the category and its probability, not the lab values that led to it.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="diagnosis_records"
    )
    category = models.CharField(max_length=32, choices=[(c, c) for c in CATEGORIES])
    probability = models.FloatField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        # The view asks for a user's most recent record on every diagnosis.
        indexes = [models.Index(fields=["user", "-created_at"], name="diagnosis_user_recent_idx")]

    def __str__(self) -> str:
        return f"{self.category} ({self.probability:.2f})"
