"""The runtimes' entry points with the slot's bind address and credential check
(``python -m model_server seldon|mlserver`` execs these; docs/security.md, "model-server").

* ``python -m model_server.launch seldon <seldon-core-microservice arguments>``: seldon-core 1.19's
  own ``microservice.main()``, with every listener it opens on ``MODEL_SERVER_HOST`` instead of
  the ``0.0.0.0`` its code hard-codes: its gunicorn applications (REST and metrics) are given
  subclasses of seldon-core's ``StandaloneApplication`` / ``UserModelApplication`` whose config
  rewrites ``bind``, and each gRPC worker binds ``host:port`` (seldon-core's port-reservation
  socket, bound but never listening, stays on every interface). The credential check itself is
  in the Flask app (:func:`model_server.access.check_seldon_request`) and, on the gRPC port, the
  interceptor :class:`~model_server.grpc_access.SyncAuthInterceptor`, given to the server
  seldon-core's ``get_grpc_server`` builds (its module's ``grpc`` name pointed at
  :class:`~model_server.grpc_access.GrpcWithInterceptors`).
* ``python -m model_server.launch mlserver <folder>``: what ``mlserver start <folder>`` does, with
  the kit's :class:`~creditrisk_kit.auth.http.AuthMiddleware` added to MLServer's REST app and
  :class:`~model_server.grpc_access.AsyncAuthInterceptor` to its gRPC server before it starts
  (:class:`ProtectedMLServer`); ``host`` (every MLServer listener) is in the folder's
  ``settings.json``.

seldon-core has no host setting and neither runtime a middleware or interceptor setting: they are
set here from the outside, without changing their files; a seldon-core or MLServer upgrade that
renames what is replaced here fails at start (``AttributeError``, or ``RuntimeError`` when a
gRPC server was not built through our factory), not silently.
"""

from __future__ import annotations

import contextlib
import os
import ssl
import sys
from typing import Any

from creditrisk_kit.tls import ReloadingSslContext, ServerTls

from model_server.settings import load_settings


def drop_kit_metrics() -> None:
    """Take the kit's RPC / HTTP instruments (registered at import, unused by the runtimes) out of
    prometheus-client's default registry: MLServer's gRPC interceptor (py-grpc-prometheus)
    registers the same ``grpc_server_handled_total`` there and refuses to start on the duplicate,
    and seldon-core's metrics port would show them empty."""
    from creditrisk_kit import metrics
    from prometheus_client import REGISTRY

    for collector in (
        metrics.GRPC_HANDLED,
        metrics.GRPC_HANDLING_SECONDS,
        metrics.HTTP_REQUESTS,
        metrics.HTTP_DURATION_SECONDS,
        metrics.AUTH_REFUSALS,
    ):
        with contextlib.suppress(KeyError):  # already out
            REGISTRY.unregister(collector)


def _host_port(host: str, port: object) -> str:
    host = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return f"{host}:{port}"


def gunicorn_tls_options(tls: ServerTls) -> dict[str, Any]:
    """gunicorn options serving ``tls`` (the kit's files): ``certfile`` / ``keyfile`` turn TLS on,
    and the ``ssl_context`` server hook, which gunicorn calls for every accepted connection, hands
    it the kit's :class:`~creditrisk_kit.tls.ReloadingSslContext` after checking the files (a
    renewed certificate serves the next connection; client certificates required with a client CA).
    """
    contexts: dict[int, ReloadingSslContext] = {}  # one per serving process (made after the fork)

    def ssl_context(_config: Any, _default_factory: Any) -> ssl.SSLContext:
        context = contexts.get(os.getpid())
        if context is None:
            context = contexts[os.getpid()] = tls.ssl_context()
        else:
            context.reload_if_changed()
        return context.context

    return {"certfile": str(tls.cert_file), "keyfile": str(tls.key_file), "ssl_context": ssl_context}


class _BoundGrpcServer:
    """seldon-core's gRPC server with its one ``add_insecure_port`` call turned into ``host:port``,
    over TLS (the kit's reloading server credentials) when ``tls`` is set."""

    def __init__(self, server: Any, host: str, tls: ServerTls | None) -> None:
        self._server, self._host, self._tls = server, host, tls

    def add_insecure_port(self, address: str) -> int:
        bound = _host_port(self._host, address.rpartition(":")[2])
        if self._tls is None:
            return int(self._server.add_insecure_port(bound))
        return int(self._server.add_secure_port(bound, self._tls.grpc_credentials()))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._server, name)


def run_seldon(argv: list[str]) -> None:
    """seldon-core's ``microservice.main()`` with ``argv``, every listener on ``MODEL_SERVER_HOST``,
    over TLS when ``MODEL_SERVER_TLS_CERT_FILE`` is set (mutual with ``_TLS_CLIENT_CA_FILE``)."""
    from seldon_core import microservice, wrapper

    from model_server import access
    from model_server.grpc_access import (
        GrpcWithInterceptors,
        SyncAuthInterceptor,
        built_through,
        seldon_grpc_policy,
    )

    # The bind address, TLS and the gRPC credential check below replace names in this process's
    # modules; seldon-core's servers run in child processes, which see them only when forked. A
    # spawned or forkserver child re-imports seldon-core and would serve unchecked on 0.0.0.0
    # (second attacker pass, issue 18): fork, or refuse to start.
    microservice.mp.set_start_method("fork", force=True)
    if microservice.mp.get_start_method() != "fork":
        raise RuntimeError("seldon-core's processes must be forked (multiprocessing start method 'fork')")
    settings = load_settings()
    host, tls = settings.host, ServerTls.from_settings(settings)
    policy = seldon_grpc_policy()  # a method of seldon-core's without an entry stops the slot here
    drop_kit_metrics()
    tls_options = gunicorn_tls_options(tls) if tls is not None else {}

    def rebind(options: dict[str, Any] | None) -> dict[str, Any]:
        options = dict(options or {})
        port = str(options.get("bind", "")).rpartition(":")[2]
        options["bind"] = _host_port(host, port)
        options.update(tls_options)
        return options

    class BoundStandalone(microservice.StandaloneApplication):  # type: ignore[misc,name-defined]
        def __init__(self, app: Any, options: dict[str, Any] | None = None) -> None:
            super().__init__(app, rebind(options))

    class BoundUserModel(microservice.UserModelApplication):  # type: ignore[misc,name-defined]
        def __init__(self, app: Any, *args: Any, options: dict[str, Any] | None = None) -> None:
            super().__init__(app, *args, options=rebind(options))

    get_grpc_server = wrapper.get_grpc_server

    def bound_grpc_server(*args: Any, **kwargs: Any) -> _BoundGrpcServer:
        # in each gRPC worker process: seldon-core's own server, built with our interceptor
        factory = GrpcWithInterceptors([SyncAuthInterceptor(access.authenticator(settings), policy)])
        server = built_through(wrapper, "grpc", factory, lambda: get_grpc_server(*args, **kwargs))
        return _BoundGrpcServer(server, host, tls)

    microservice.StandaloneApplication = BoundStandalone
    microservice.UserModelApplication = BoundUserModel
    wrapper.get_grpc_server = bound_grpc_server  # called as seldon_microservice.get_grpc_server
    sys.argv = ["seldon-core-microservice", *argv]
    microservice.main()


def protected_mlserver_class() -> type:
    """``mlserver.MLServer`` whose REST app and gRPC server check credentials
    (:data:`model_server.access.MLSERVER_POLICY`, :func:`model_server.grpc_access.mlserver_grpc_policy`).

    The gRPC server is built by MLServer's ``GRPCServer._create_server`` at start, with
    ``grpc.aio.server`` called as ``mlserver.grpc.server.aio.server``: that name is pointed at
    :class:`~model_server.grpc_access.AioWithInterceptors` for the call, and a server not built
    through it stops the slot (``RuntimeError``) rather than serve gRPC unchecked.
    """
    from creditrisk_kit.auth.http import AuthMiddleware, check_routes
    from mlserver import MLServer
    from mlserver.grpc import server as mlserver_grpc

    from model_server import access
    from model_server.grpc_access import (
        AioWithInterceptors,
        AsyncAuthInterceptor,
        built_through,
        mlserver_grpc_policy,
    )

    class ProtectedMLServer(MLServer):  # type: ignore[misc]
        def _create_servers(self) -> None:
            super()._create_servers()
            authenticator = access.authenticator(load_settings())
            app = self._rest_server._app
            check_routes(app, access.MLSERVER_POLICY, access.MLSERVER_PUBLIC_PATHS)
            app.add_middleware(
                AuthMiddleware,
                authenticator=authenticator,
                policy=access.MLSERVER_POLICY,
                public_paths=access.MLSERVER_PUBLIC_PATHS,
            )
            policy = mlserver_grpc_policy()  # a method without an entry stops the slot here
            create_grpc = self._grpc_server._create_server

            def checked_grpc_server() -> Any:
                factory = AioWithInterceptors([AsyncAuthInterceptor(authenticator, policy)])
                return built_through(mlserver_grpc, "aio", factory, create_grpc)

            self._grpc_server._create_server = checked_grpc_server

    return ProtectedMLServer


def uvicorn_tls_options(tls: ServerTls) -> dict[str, Any]:
    """uvicorn's ``ssl_*`` arguments for ``tls`` (read at start: a renewed certificate needs a restart)."""
    options: dict[str, Any] = {"ssl_certfile": str(tls.cert_file), "ssl_keyfile": str(tls.key_file)}
    if tls.client_ca_file is not None:
        options.update(ssl_ca_certs=str(tls.client_ca_file), ssl_cert_reqs=ssl.CERT_REQUIRED)
    return options


async def _serve_mlserver(folder: str) -> None:
    from mlserver.cli.serve import load_settings as load_mlserver_settings

    settings, models_settings = await load_mlserver_settings(folder)
    tls = ServerTls.from_settings(load_settings())
    if tls is not None:  # MLServer's own (unsupported-labelled) uvicorn settings: REST and metrics
        settings._custom_rest_server_settings = uvicorn_tls_options(tls)
        settings._custom_metrics_server_settings = uvicorn_tls_options(tls)
    server = protected_mlserver_class()(settings)
    await server.start(models_settings)


def run_mlserver(folder: str) -> None:
    """``mlserver start <folder>`` (uvloop, as its CLI) with :class:`ProtectedMLServer`."""
    import asyncio

    from mlserver.utils import install_uvloop_event_loop

    drop_kit_metrics()
    install_uvloop_event_loop()
    asyncio.run(_serve_mlserver(folder))


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in ("seldon", "mlserver") or (args[0] == "mlserver" and len(args) != 2):
        print("usage: python -m model_server.launch seldon ARGS... | mlserver FOLDER", file=sys.stderr)
        return 2
    if args[0] == "seldon":
        run_seldon(args[1:])
    else:
        run_mlserver(args[1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
