"""TEST FIXTURES ONLY (tests and the benchmark): logged runs made by the training-service's code in
its own environment, and model versions registered the way the registry-gateway registers them."""
