"""The web side of the node: review pages, the REST API and Prometheus metrics, behind a login.

app.py wires the FastAPI app and runs it with uvicorn; api.py and pages.py hold the routes, auth.py
the logins and roles, views.py what both show, retraining.py a retraining started from the web,
metrics.py the counters the DICOM handlers and jobs feed (importable without FastAPI).
"""
