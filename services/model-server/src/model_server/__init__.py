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

Service shape. Every gRPC service of the platform starts through the service kit's one entry
(``creditrisk_kit.run_service``: settings, telemetry, readiness, drain, shutdown hooks, an extra
HTTP server). The model-server follows it as far as seldon-core and MLServer allow:

* shared: the settings are loaded the same way (:func:`model_server.settings.load_settings` calls
  ``creditrisk_telemetry.configuration.load_or_exit``: exit 2 naming each bad ``MODEL_SERVER_*``
  variable, never its value, before any runtime is started); telemetry and JSON logs are set up
  the same way (``configure_telemetry("model-server")`` then ``configure_logging``), in each
  serving process (after seldon-core's fork, in MLServer's ``load``);
* not shared, because the runtime owns it: the servers, their ports and the process tree
  (``python -m model_server`` execs :mod:`model_server.launch`, which runs seldon-core's
  ``microservice.main()`` or MLServer's server as ``mlserver start`` would; gunicorn and MLServer
  install their own SIGTERM handling), so readiness is the slot's own
  (:mod:`model_server.readiness`: state files across the serving processes, the supervisor's
  ``drain`` command flipping them not-ready before the stop) rather than the kit's gRPC health; the
  shutdown work is one ordered routine per process (the follower stopped, then the state file
  removed: :meth:`model_server.slot.Slot.stop` from MLServer's ``unload``, ``atexit`` in a
  seldon-core worker), not the kit's hook list;
* shared through the runtimes' own hooks: the kit's settings (:class:`creditrisk_kit.ServiceSettings`:
  ``MODEL_SERVER_HOST``, ``MODEL_SERVER_AUTH_*``) and its credential check on the REST servers
  (:mod:`model_server.access`). The kit installs here with its grpcio helpers held at seldon-core's
  1.62 / protobuf 5.29 (``[tool.uv] override-dependencies`` in ``pyproject.toml``).
"""

import os

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
