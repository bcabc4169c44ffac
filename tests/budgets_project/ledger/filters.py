import django_filters

from ledger.models import Budget


class BudgetFilter(django_filters.FilterSet):
    min_limit = django_filters.NumberFilter(field_name="limit", lookup_expr="gte")

    class Meta:
        model = Budget
        fields = ["month", "closed", "currency"]
