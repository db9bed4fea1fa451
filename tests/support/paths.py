"""The repository and the test data folder, wherever a test file sits."""

from pathlib import Path

from training.data import OPENI, REAL_SERIES

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"
# The data sets (training.data.DATA_ROOT: $SLMNODE_DATA, else ../shared/data): tests marked needs_data skip without.
DATA_AVAILABLE = (OPENI / "reports.csv").is_file() and REAL_SERIES.is_file()
