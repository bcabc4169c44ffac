"""The HCV category classifier: a logistic regression trained on the bundled data set.

The 615 rows train in milliseconds, so each process trains the model on first use instead of
loading a pickle: there is no file to keep compatible with the installed scikit-learn, and every
process that trains on the same data with the same library version gets the same model.

Inputs are in the data set's units (see ``diagnosis.serializers.PLAUSIBLE_RANGES``). The model
classifies into the data set's five categories; it is a demonstration workload for telemetry, not
a medical device.
"""

import csv
import hashlib
import json
import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import numpy as np
import sklearn
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score
from sklearn.model_selection import RepeatedStratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from threadpoolctl import threadpool_limits

from diagnosis.categories import CATEGORIES, CATEGORY_LABELS

TRAINING_DATA_PATH = Path(__file__).resolve().parent.parent / "data" / "hcvdat0.csv"

# Request field name -> column in the CSV file. The order is the model's feature order.
_CSV_COLUMN_BY_FEATURE: Mapping[str, str] = MappingProxyType(
    {
        "age": "Age",
        "sex": "Sex",
        "alb": "ALB",
        "alp": "ALP",
        "alt": "ALT",
        "ast": "AST",
        "bil": "BIL",
        "che": "CHE",
        "chol": "CHOL",
        "crea": "CREA",
        "ggt": "GGT",
        "prot": "PROT",
    }
)
FEATURE_NAMES: tuple[str, ...] = tuple(_CSV_COLUMN_BY_FEATURE)

# These span more than an order of magnitude in the data set (e.g. GGT 4.5-651 U/L); on a log
# scale a few very high values no longer dominate the fit. Log scaling raised cross-validated
# accuracy from about 0.93 to 0.94 and balanced accuracy from about 0.61 to 0.67.
LOG_SCALED_FEATURES: tuple[str, ...] = ("alp", "alt", "ast", "bil", "crea", "ggt")
_LOG_SCALED_COLUMNS = [FEATURE_NAMES.index(name) for name in LOG_SCALED_FEATURES]

_SEX_CODES: Mapping[str, float] = MappingProxyType({"m": 1.0, "f": 0.0})

# Everything that shapes the trained model besides the data and the library version. Change
# MODEL_REVISION whenever build_pipeline() changes in a way these values do not capture.
MODEL_REVISION = 1
REGULARISATION_C = 1.0
MAX_SOLVER_ITERATIONS = 2000  # lbfgs converges in well under 100 on this data
HYPERPARAMETERS: Mapping[str, object] = MappingProxyType(
    {
        "revision": MODEL_REVISION,
        "imputation": "median",
        "log_scaled_features": LOG_SCALED_FEATURES,
        "scaling": "standard",
        "classifier": "logistic_regression",
        "C": REGULARISATION_C,
        "max_iter": MAX_SOLVER_ITERATIONS,
    }
)

# Only cross-validation is random (the fold assignment); training itself is deterministic.
CROSS_VALIDATION_SEED = 20200


@dataclass(frozen=True, slots=True)
class Prediction:
    category: str  # one of CATEGORIES, e.g. "0=Blood Donor"
    label: str  # human-readable, e.g. "Blood Donor"
    probability: float  # the model's probability of `category`, in [0, 1]


@dataclass(frozen=True)
class TrainingData:
    features: np.ndarray  # (rows, len(FEATURE_NAMES)); NaN where the data set says NA
    categories: np.ndarray  # (rows,), the data set's Category strings


@dataclass(frozen=True)
class CrossValidationReport:
    folds: int
    repeats: int
    rows: int
    accuracy_mean: float
    accuracy_std: float
    balanced_accuracy_mean: float
    balanced_accuracy_std: float
    macro_f1_mean: float
    # Share of held-out rows of each category that were classified correctly, over all folds.
    recall_by_category: Mapping[str, float]
    # What always answering "0=Blood Donor" would score; accuracy must be read against it.
    majority_class_accuracy: float
    # Accuracy on the rows the model was trained on: an upper bound, not an estimate.
    training_accuracy: float


class ModelHealthError(RuntimeError):
    """The model answered the health probe implausibly."""


def _encode_sex(sex: str) -> float:
    try:
        return _SEX_CODES[sex]
    except KeyError:
        raise ValueError('sex must be "m" or "f"') from None


def _parse_csv_value(feature_name: str, raw: str) -> float:
    if feature_name == "sex":
        return _encode_sex(raw)
    return math.nan if raw == "NA" else float(raw)


def load_training_data(path: Path = TRAINING_DATA_PATH) -> TrainingData:
    features: list[list[float]] = []
    categories: list[str] = []
    with path.open(newline="", encoding="utf-8") as csv_file:
        for row in csv.DictReader(csv_file):
            features.append(
                [_parse_csv_value(name, row[column]) for name, column in _CSV_COLUMN_BY_FEATURE.items()]
            )
            categories.append(row["Category"])
    return TrainingData(features=np.array(features, dtype=float), categories=np.array(categories))


def _log_scale_skewed_columns(features: np.ndarray) -> np.ndarray:
    scaled = np.array(features, dtype=float, copy=True)
    scaled[:, _LOG_SCALED_COLUMNS] = np.log1p(scaled[:, _LOG_SCALED_COLUMNS])
    return scaled


def build_pipeline() -> Pipeline:
    return Pipeline(
        [
            # Only training rows have gaps (31 NA cells in 26 rows); requests carry every value.
            ("impute_missing", SimpleImputer(strategy="median")),
            ("log_scale_skewed", FunctionTransformer(_log_scale_skewed_columns)),
            ("standardise", StandardScaler()),
            ("classify", LogisticRegression(C=REGULARISATION_C, max_iter=MAX_SOLVER_ITERATIONS)),
        ]
    )


def _fit(features: np.ndarray, categories: np.ndarray) -> Pipeline:
    # One BLAS thread: on matrices this small, extra threads cost far more than they save (on a
    # busy machine a fit can take tens of times longer), and a fixed thread count removes one
    # source of numerical differences between runs.
    with threadpool_limits(limits=1):
        return build_pipeline().fit(features, categories)


def train(data: TrainingData | None = None) -> Pipeline:
    data = data if data is not None else load_training_data()
    return _fit(data.features, data.categories)


def _compute_model_version() -> str:
    digest = hashlib.sha256(TRAINING_DATA_PATH.read_bytes())
    digest.update(
        json.dumps(
            {
                "features": FEATURE_NAMES,
                "hyperparameters": dict(HYPERPARAMETERS),
                "scikit-learn": sklearn.__version__,
            },
            sort_keys=True,
        ).encode()
    )
    return f"logreg-{digest.hexdigest()[:12]}"


# Identifies the trained model: the same data, settings and scikit-learn version give the same
# version string and the same predictions.
MODEL_VERSION = _compute_model_version()

_trained_model: Pipeline | None = None
_training_lock = threading.Lock()


def get_trained_model() -> Pipeline:
    """The process-wide model, trained by whichever request needs it first."""
    global _trained_model
    model = _trained_model
    if model is not None:
        return model
    # Concurrent first requests wait for one training instead of each training their own.
    with _training_lock:
        if _trained_model is None:
            _trained_model = train()
        return _trained_model


def _feature_row(lab_values: Mapping[str, float | str]) -> np.ndarray:
    missing = [name for name in FEATURE_NAMES if name not in lab_values]
    if missing:
        raise ValueError(f"missing lab values: {', '.join(missing)}")
    row = [
        _encode_sex(str(lab_values[name])) if name == "sex" else float(lab_values[name])
        for name in FEATURE_NAMES
    ]
    return np.array([row], dtype=float)


def predict(lab_values: Mapping[str, float | str]) -> Prediction:
    """Classify one set of lab values, keyed by FEATURE_NAMES, in the data set's units.

    The caller validates ranges (the API does so in its serializer); this only checks that every
    value is present. Error messages name fields, never values.
    """
    model = get_trained_model()
    probabilities = model.predict_proba(_feature_row(lab_values))[0]
    best = int(np.argmax(probabilities))
    category = str(model.classes_[best])
    return Prediction(
        category=category,
        label=CATEGORY_LABELS[category],
        probability=float(probabilities[best]),
    )


# A textbook-normal blood donor: the median of each value over the data set's 533 blood donors
# (sex: the more common one). Any working model must classify it as a blood donor.
HEALTH_PROBE_SAMPLE: Mapping[str, float | str] = MappingProxyType(
    {
        "age": 47,
        "sex": "m",
        "alb": 42.2,
        "alp": 66.7,
        "alt": 23.1,
        "ast": 24.8,
        "bil": 6.9,
        "che": 8.35,
        "chol": 5.41,
        "crea": 78.0,
        "ggt": 21.4,
        "prot": 72.2,
    }
)
HEALTH_PROBE_EXPECTED_CATEGORY = "0=Blood Donor"


def health_probe() -> Prediction:
    """Run the model on HEALTH_PROBE_SAMPLE; raise ModelHealthError if the answer is implausible.

    Called by the health check of ``otel_hcv`` (settings ``OTEL_HCV["HEALTH_MODEL_PROBE"]``).
    It records no diagnosis telemetry: probes are not diagnoses.
    """
    prediction = predict(HEALTH_PROBE_SAMPLE)
    if prediction.category != HEALTH_PROBE_EXPECTED_CATEGORY:
        raise ModelHealthError(f"model classified the reference blood donor as {prediction.category!r}")
    if not 0.0 <= prediction.probability <= 1.0:
        raise ModelHealthError(f"model returned probability {prediction.probability!r}")
    return prediction


def cross_validate(folds: int = 5, repeats: int = 5) -> CrossValidationReport:
    """Estimate how well the model generalises, by repeated stratified k-fold cross-validation.

    Deterministic: the fold assignment is seeded with CROSS_VALIDATION_SEED.
    """
    data = load_training_data()
    features, categories = data.features, data.categories
    splitter = RepeatedStratifiedKFold(n_splits=folds, n_repeats=repeats, random_state=CROSS_VALIDATION_SEED)
    accuracies: list[float] = []
    balanced_accuracies: list[float] = []
    macro_f1s: list[float] = []
    held_out_by_category = dict.fromkeys(CATEGORIES, 0)
    correct_by_category = dict.fromkeys(CATEGORIES, 0)
    for train_rows, test_rows in splitter.split(features, categories):
        model = _fit(features[train_rows], categories[train_rows])
        expected = categories[test_rows]
        predicted = model.predict(features[test_rows])
        accuracies.append(accuracy_score(expected, predicted))
        balanced_accuracies.append(balanced_accuracy_score(expected, predicted))
        macro_f1s.append(f1_score(expected, predicted, average="macro", zero_division=0))
        for true_category, predicted_category in zip(expected, predicted, strict=True):
            held_out_by_category[true_category] += 1
            correct_by_category[true_category] += int(true_category == predicted_category)

    full_model = _fit(features, categories)
    majority_share = max(np.mean(categories == category) for category in CATEGORIES)
    return CrossValidationReport(
        folds=folds,
        repeats=repeats,
        rows=len(categories),
        accuracy_mean=float(np.mean(accuracies)),
        accuracy_std=float(np.std(accuracies)),
        balanced_accuracy_mean=float(np.mean(balanced_accuracies)),
        balanced_accuracy_std=float(np.std(balanced_accuracies)),
        macro_f1_mean=float(np.mean(macro_f1s)),
        recall_by_category=MappingProxyType(
            {
                category: correct_by_category[category] / held_out_by_category[category]
                for category in CATEGORIES
            }
        ),
        majority_class_accuracy=float(majority_share),
        training_accuracy=float(accuracy_score(categories, full_model.predict(features))),
    )
