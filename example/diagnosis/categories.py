"""The five categories of the HCV data set, as the model returns them."""

from collections.abc import Mapping
from types import MappingProxyType

# The data set's own category strings, and a label to show people.
CATEGORY_LABELS: Mapping[str, str] = MappingProxyType(
    {
        "0=Blood Donor": "Blood Donor",
        "0s=suspect Blood Donor": "Suspect Blood Donor",
        "1=Hepatitis": "Hepatitis",
        "2=Fibrosis": "Fibrosis",
        "3=Cirrhosis": "Cirrhosis",
    }
)
CATEGORIES: tuple[str, ...] = tuple(CATEGORY_LABELS)
