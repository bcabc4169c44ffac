import csv
import math
from typing import Any

import pytest

from diagnosis.model import TRAINING_DATA_PATH
from diagnosis.serializers import PLAUSIBLE_RANGES, DiagnosisRequestSerializer

NUMERIC_FIELDS = sorted(PLAUSIBLE_RANGES)
ALL_FIELDS = [*NUMERIC_FIELDS, "sex"]


def errors_for(body: Any) -> dict[str, Any]:
    serializer = DiagnosisRequestSerializer(data=body)
    assert not serializer.is_valid()
    return serializer.errors


def test_valid_request_is_accepted_as_floats(lab_values):
    serializer = DiagnosisRequestSerializer(data=lab_values)
    assert serializer.is_valid(), serializer.errors
    assert serializer.validated_data["sex"] == "m"
    assert all(isinstance(serializer.validated_data[name], float) for name in NUMERIC_FIELDS)


@pytest.mark.parametrize("field", ALL_FIELDS)
def test_missing_field_is_named(lab_values, field):
    del lab_values[field]
    assert list(errors_for(lab_values)) == [field]


@pytest.mark.parametrize("field", ALL_FIELDS)
def test_null_is_rejected(lab_values, field):
    lab_values[field] = None
    assert list(errors_for(lab_values)) == [field]


@pytest.mark.parametrize("field", NUMERIC_FIELDS)
@pytest.mark.parametrize("not_a_number", ["12", "", "lots", True, False, [1], {"value": 1}])
def test_measurement_must_be_a_json_number(lab_values, field, not_a_number):
    lab_values[field] = not_a_number
    errors = errors_for(lab_values)
    assert list(errors) == [field]
    assert "JSON number" in str(errors[field][0])


@pytest.mark.parametrize("field", NUMERIC_FIELDS)
@pytest.mark.parametrize("non_finite", [math.nan, math.inf, -math.inf])
def test_non_finite_numbers_are_rejected(lab_values, field, non_finite):
    lab_values[field] = non_finite
    assert errors_for(lab_values) == {field: ["Must be a finite number."]}


def test_integer_too_large_for_a_float_is_rejected(lab_values):
    lab_values["alt"] = 10**400
    assert list(errors_for(lab_values)) == ["alt"]


@pytest.mark.parametrize("field", NUMERIC_FIELDS)
def test_values_below_the_range_are_rejected_with_the_unit(lab_values, field):
    plausible = PLAUSIBLE_RANGES[field]
    lab_values[field] = plausible.minimum - 0.01
    errors = errors_for(lab_values)
    assert list(errors) == [field]
    assert str(errors[field][0]) == f"Must be at least {plausible.minimum} {plausible.unit}."


@pytest.mark.parametrize("field", NUMERIC_FIELDS)
def test_values_above_the_range_are_rejected_with_the_unit(lab_values, field):
    plausible = PLAUSIBLE_RANGES[field]
    lab_values[field] = plausible.maximum + 0.01
    errors = errors_for(lab_values)
    assert list(errors) == [field]
    assert str(errors[field][0]) == f"Must be at most {plausible.maximum} {plausible.unit}."


@pytest.mark.parametrize("field", NUMERIC_FIELDS)
def test_range_limits_themselves_are_accepted(lab_values, field):
    for limit in (PLAUSIBLE_RANGES[field].minimum, PLAUSIBLE_RANGES[field].maximum):
        lab_values[field] = limit
        assert DiagnosisRequestSerializer(data=lab_values).is_valid()


@pytest.mark.parametrize("field", NUMERIC_FIELDS)
def test_ranges_contain_the_data_set_extremes(field):
    plausible = PLAUSIBLE_RANGES[field]
    assert plausible.minimum <= plausible.data_set_minimum <= plausible.data_set_maximum <= plausible.maximum


def test_every_complete_row_of_the_data_set_is_a_valid_request():
    with TRAINING_DATA_PATH.open(newline="", encoding="utf-8") as csv_file:
        rows = list(csv.DictReader(csv_file))
    checked = 0
    for row in rows:
        if "NA" in row.values():
            continue
        body = {name.lower(): float(value) for name, value in row.items() if name not in ("Sex", "Category")}
        body["sex"] = row["Sex"]
        serializer = DiagnosisRequestSerializer(data=body)
        assert serializer.is_valid(), (rows.index(row), serializer.errors)
        checked += 1
    assert checked == 589  # 615 rows, 26 of them with a missing value


@pytest.mark.parametrize(
    ("field", "value"),
    [
        # Units other than the data set's: the mistakes the ranges exist to catch.
        ("che", 7500),  # U/L instead of kU/L
        ("crea", 1.2),  # mg/dL instead of µmol/L
        ("alb", 4.2),  # g/dL instead of g/L
        ("prot", 7.1),  # g/dL instead of g/L
        ("chol", 190),  # mg/dL instead of mmol/L
        ("age", 12),  # a child: outside what the model was trained on
    ],
)
def test_values_in_other_units_are_rejected(lab_values, field, value):
    lab_values[field] = value
    assert list(errors_for(lab_values)) == [field]


@pytest.mark.parametrize("sex", ["M", "male", "x", "", 1, True, ["m"]])
def test_sex_must_be_m_or_f(lab_values, sex):
    lab_values["sex"] = sex
    assert errors_for(lab_values) == {"sex": ['Must be "m" or "f".']}


def test_sex_f_is_accepted(lab_values):
    lab_values["sex"] = "f"
    assert DiagnosisRequestSerializer(data=lab_values).is_valid()


def test_unknown_fields_are_named(lab_values):
    lab_values["creat"] = 78
    lab_values["notes"] = "x"
    errors = errors_for(lab_values)
    assert sorted(errors) == ["creat", "notes"]
    assert "Accepted fields: age, sex, alb" in str(errors["creat"][0])


def test_unknown_fields_are_reported_together_with_other_errors(lab_values):
    lab_values["creat"] = lab_values.pop("crea")
    lab_values["alb"] = "high"
    assert sorted(errors_for(lab_values)) == ["alb", "crea", "creat"]


@pytest.mark.parametrize("body", [[], [1, 2], "text", 42, None])
def test_body_must_be_an_object(body):
    assert "non_field_errors" in errors_for(body)


def test_error_messages_do_not_repeat_submitted_values(lab_values):
    lab_values.update({"alb": 4.123, "che": 7512.5, "sex": "male-ish", "alt": "98.76"})
    errors = str(errors_for(lab_values))
    for submitted in ("4.123", "7512.5", "male-ish", "98.76"):
        assert submitted not in errors


def test_readme_table_states_the_same_ranges():
    readme = TRAINING_DATA_PATH.parents[1] / "README.md"
    table_rows = {}
    for line in readme.read_text(encoding="utf-8").splitlines():
        if line.startswith("| "):
            cells = [cell.strip() for cell in line.strip("|").split("|")]
            table_rows[cells[0]] = cells
    for field, plausible in PLAUSIBLE_RANGES.items():
        _, _, unit, accepted, in_data_set = table_rows[field]
        assert unit == plausible.unit
        assert accepted == f"{plausible.minimum:g} to {plausible.maximum:g}"
        assert in_data_set == f"{plausible.data_set_minimum:g} to {plausible.data_set_maximum:g}"
