"""The repository and the test data folder, wherever a test file sits."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"
SHARED_DATA = ROOT.parent / "shared" / "data"  # the data sets beside the repository (../shared/data)
DATA_AVAILABLE = (SHARED_DATA / "openi" / "reports.csv").is_file()
