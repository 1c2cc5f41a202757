"""The inference-gateway: the credit-risk platform's public prediction API (REST and gRPC).

The domain core is :class:`inference_gateway.core.GatewayCore`; :mod:`inference_gateway.app`
(FastAPI) and :mod:`inference_gateway.servicer` (gRPC) are thin transports over it;
:class:`inference_gateway.service.Gateway` wires the process.
"""
