"""TEST FIXTURES ONLY: never used on the production path (which reads the feature-service)."""
