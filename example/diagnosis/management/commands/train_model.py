"""Train the diagnosis model and report how well it generalises.

The service trains the same model by itself on first use; this command is for looking at the
numbers (and for checking that the bundled data and the installed scikit-learn still give a
sensible model).
"""

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from diagnosis import model


class Command(BaseCommand):
    help = "Train the HCV diagnosis model and print cross-validated metrics."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--folds", type=int, default=5, help="Cross-validation folds (default 5).")
        parser.add_argument(
            "--repeats", type=int, default=5, help="Repetitions with reshuffled folds (default 5)."
        )

    def handle(self, *args: Any, folds: int, repeats: int, **options: Any) -> None:
        trained = model.train()
        probe = model.health_probe()
        report = model.cross_validate(folds=folds, repeats=repeats)
        out = self.stdout.write
        out(f"model version        {model.MODEL_VERSION}")
        out(f"training data        {model.TRAINING_DATA_PATH.name}, {report.rows} rows")
        out(f"classes              {', '.join(str(c) for c in trained.classes_)}")
        out(f"cross-validation     {report.folds}-fold stratified, repeated {report.repeats} times")
        out(f"accuracy             {report.accuracy_mean:.3f} ± {report.accuracy_std:.3f}")
        out(f"  always 'Blood Donor' would score {report.majority_class_accuracy:.3f}")
        out(f"balanced accuracy    {report.balanced_accuracy_mean:.3f} ± {report.balanced_accuracy_std:.3f}")
        out(f"macro F1             {report.macro_f1_mean:.3f}")
        out("recall by category (held-out rows classified correctly):")
        for category, recall in report.recall_by_category.items():
            out(f"  {category:<24} {recall:.3f}")
        out(f"training accuracy    {report.training_accuracy:.3f} (on the training rows; optimistic)")
        out(f"health probe         {probe.category} (p={probe.probability:.3f})")
