"""The feature-service: Feast feature definitions, materialization, online and point-in-time retrieval.

The domain API lives in :mod:`feature_service.core` (``FeatureStoreCore``, with one object per job:
catalogue, online reads, historical reads, writes); the transports (the gRPC servicer) only convert
between their messages and its types (:mod:`feature_service.domain`). ``import feast`` is slow
(docs/design.md, "Measured facts"), so this package imports it lazily: importing ``feature_service``
or its settings does not import Feast.
"""
