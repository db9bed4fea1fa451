"""What the tests share: DICOM instances, a node on 127.0.0.1, a tiny model, the repository's paths.

Imported one way everywhere: `from tests.support.<module> import ...`.
"""
