"""Validation of a diagnosis request.

The model was trained on lab values in the units of the HCV data set, so the API takes exactly
those units and rejects values outside a plausible range instead of silently classifying numbers
in other units. The ranges are generous: every value in the data set is inside them, and so is
every value a living adult is likely to have, but common unit mix-ups fall outside, for instance
cholinesterase in U/L (7500 instead of 7.5 kU/L), creatinine in mg/dL (1.2 instead of 106 µmol/L),
albumin or total protein in g/dL (4.2 instead of 42 g/L) and cholesterol in mg/dL.
Some mix-ups cannot be caught by range (bilirubin in mg/dL looks like a low value in µmol/L).

Only JSON numbers are accepted for measurements: no strings such as "12", no booleans (which
Python would otherwise treat as 0 and 1), no NaN or infinity, no null. Error messages name the
field and the accepted range, never the submitted value.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from rest_framework import serializers


@dataclass(frozen=True)
class PlausibleRange:
    description: str
    unit: str
    minimum: float
    maximum: float
    # The extremes of the HCV data set (615 rows), which the range must contain.
    data_set_minimum: float
    data_set_maximum: float


PLAUSIBLE_RANGES: Mapping[str, PlausibleRange] = MappingProxyType(
    {
        # The data set holds adults only (19-77 years); the model knows nothing about children,
        # whose reference values differ.
        "age": PlausibleRange("Age", "years", 18, 100, 19, 77),
        # Below 10 g/L is exceptional even in severe disease, and it rejects g/dL (typically
        # 3.5-5). The data set's 82.2 g/L is above any physiological value but is kept valid.
        "alb": PlausibleRange("Albumin", "g/L", 10, 100, 14.9, 82.2),
        # Cholestasis and bone disease can push ALP past 1000 U/L.
        "alp": PlausibleRange("Alkaline phosphatase", "U/L", 5, 3000, 11.3, 416.6),
        # Acute hepatitis and drug-induced liver injury reach several thousand U/L.
        "alt": PlausibleRange("Alanine aminotransferase", "U/L", 0, 10000, 0.9, 325.3),
        "ast": PlausibleRange("Aspartate aminotransferase", "U/L", 0, 10000, 10.6, 324.0),
        # Deep jaundice stays well under 1000 µmol/L (about 58 mg/dL).
        "bil": PlausibleRange("Bilirubin", "µmol/L", 0, 1000, 0.8, 254.0),
        # Rejects U/L (reference range about 5300-12900 U/L).
        "che": PlausibleRange("Cholinesterase", "kU/L", 0.5, 25, 1.42, 16.41),
        # Familial hypercholesterolaemia stays under 25 mmol/L; rejects mg/dL (typically 150-250).
        "chol": PlausibleRange("Cholesterol", "mmol/L", 0.5, 25, 1.43, 9.67),
        # Dialysis patients can exceed 1000 µmol/L; rejects mg/dL (typically 0.6-1.3).
        "crea": PlausibleRange("Creatinine", "µmol/L", 5, 2000, 8.0, 1079.1),
        # Cholestasis can push GGT past 1000 U/L.
        "ggt": PlausibleRange("Gamma-glutamyl transferase", "U/L", 0, 5000, 4.5, 650.9),
        # Myeloma can raise total protein past 100 g/L; rejects g/dL (typically 6-8).
        "prot": PlausibleRange("Total protein", "g/L", 30, 120, 44.8, 90.0),
    }
)


class PlausibleNumberField(serializers.FloatField):
    """A JSON number inside a PlausibleRange."""

    default_error_messages = {
        "not_a_number": "Must be a JSON number, not a string, boolean or other value.",
        "invalid": "Must be a finite number.",
        "overflow": "Number too large.",
    }

    def __init__(self, plausible_range: PlausibleRange, **kwargs: Any) -> None:
        unit = plausible_range.unit
        minimum, maximum = plausible_range.minimum, plausible_range.maximum
        super().__init__(
            min_value=minimum,
            max_value=maximum,
            error_messages={
                "min_value": f"Must be at least {{min_value}} {unit}.",
                "max_value": f"Must be at most {{max_value}} {unit}.",
            },
            help_text=f"{plausible_range.description} in {unit}, {minimum} to {maximum}.",
            **kwargs,
        )

    def to_internal_value(self, data: Any) -> float:
        # bool is a subclass of int, so it has to be excluded explicitly.
        if isinstance(data, bool) or not isinstance(data, int | float):
            self.fail("not_a_number")
        return super().to_internal_value(data)


class SexField(serializers.ChoiceField):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(
            choices=[("m", "male"), ("f", "female")],
            # DRF's default message repeats the submitted value; this one does not.
            error_messages={"invalid_choice": 'Must be "m" or "f".'},
            help_text='"m" or "f", as in the data set.',
            **kwargs,
        )

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid_choice")
        return super().to_internal_value(data)


class DiagnosisRequestSerializer(serializers.Serializer):
    """The lab values of one person, all required, in the units of the HCV data set."""

    age = PlausibleNumberField(PLAUSIBLE_RANGES["age"])
    sex = SexField()
    alb = PlausibleNumberField(PLAUSIBLE_RANGES["alb"])
    alp = PlausibleNumberField(PLAUSIBLE_RANGES["alp"])
    alt = PlausibleNumberField(PLAUSIBLE_RANGES["alt"])
    ast = PlausibleNumberField(PLAUSIBLE_RANGES["ast"])
    bil = PlausibleNumberField(PLAUSIBLE_RANGES["bil"])
    che = PlausibleNumberField(PLAUSIBLE_RANGES["che"])
    chol = PlausibleNumberField(PLAUSIBLE_RANGES["chol"])
    crea = PlausibleNumberField(PLAUSIBLE_RANGES["crea"])
    ggt = PlausibleNumberField(PLAUSIBLE_RANGES["ggt"])
    prot = PlausibleNumberField(PLAUSIBLE_RANGES["prot"])

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        # DRF ignores unknown keys; a misspelt field ("creat") would then surface only as
        # "crea is required", so unknown keys are reported by name alongside other errors.
        unknown_field_errors = self._unknown_field_errors(data)
        try:
            validated = super().to_internal_value(data)
        except serializers.ValidationError as exc:
            if unknown_field_errors and isinstance(exc.detail, dict):
                raise serializers.ValidationError({**exc.detail, **unknown_field_errors}) from None
            raise
        if unknown_field_errors:
            raise serializers.ValidationError(unknown_field_errors)
        return validated

    def _unknown_field_errors(self, data: Any) -> dict[str, list[str]]:
        if not isinstance(data, Mapping):
            return {}  # DRF reports "expected a dictionary" itself
        accepted = ", ".join(self.fields)
        message = f"Unknown field. Accepted fields: {accepted}."
        return {str(name): [message] for name in data if name not in self.fields}
