"""The web side of the node: review pages, the REST API and Prometheus metrics, behind a login.

app.py wires the FastAPI app and runs it with uvicorn; api.py and pages.py hold the routes, auth.py
the logins and roles, views.py what both show, retraining.py a retraining started from the web.
/metrics serves dicom_node/metrics.py, the counters the DICOM handlers and jobs feed (outside this
package, so that they import nothing of the web).
"""
