"""Scoring for one alias slot of the credit-risk platform (seldon-core 1.19 and MLServer 1.7).

Importing the package turns ONNX Runtime's telemetry off (``ORT_DISABLE_TELEMETRY=1`` unless
given) before anything here imports ``onnxruntime``: its official Linux builds start a 1DS
uploader thread at import. seldon-core imports the user model in its parent process and forks the
REST and gRPC workers from it (:func:`model_server.slot.preload_modules`), so every worker
inherited that uploader without its thread, and at exit its static destructor joined a thread
that does not exist there: ``terminate called after throwing an instance of
'std::system_error'`` and gunicorn's ``Worker was sent SIGABRT!`` / ``SIGSEGV!`` (or a worker
hanging in ``pthread_cond_destroy`` until killed). A scoring server also has no business
uploading usage events.
"""

import os

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
