"""`python -m dicom_node.cli` runs the slmnode command (the tests and benchmarks start nodes this way)."""

from dicom_node.cli.main import main

main()
