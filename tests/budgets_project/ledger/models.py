from django.conf import settings
from django.db import models


class Budget(models.Model):
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="budgets")
    name = models.CharField(max_length=100)
    month = models.CharField(max_length=7)  # "2026-11"
    limit = models.DecimalField(max_digits=10, decimal_places=2)
    currency = models.CharField(max_length=3, default="EUR")
    closed = models.BooleanField(default=False)


class Entry(models.Model):
    budget = models.ForeignKey(Budget, on_delete=models.CASCADE, related_name="entries")
    label = models.CharField(max_length=100)
    amount = models.DecimalField(max_digits=10, decimal_places=2)
    currency = models.CharField(max_length=3)
